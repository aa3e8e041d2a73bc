"""A newer release: ``Collator.__call__`` was renamed to ``Collator.collate``."""


class Collator:
    def __init__(self, tag="base"):
        self.tag = tag

    def collate(self, examples):
        return {"collated": list(examples), "by": type(self).__name__, "tag": self.tag}


class SubCollator(Collator):
    pass
