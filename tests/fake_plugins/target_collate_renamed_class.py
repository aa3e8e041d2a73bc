"""A newer release: the class was renamed (``Collator`` -> ``DataCollator``)."""


class DataCollator:
    def __init__(self, tag="base"):
        self.tag = tag

    def __call__(self, examples):
        return {"collated": list(examples), "by": type(self).__name__, "tag": self.tag}


class SubCollator(DataCollator):
    pass
