"""The fake VLM library's collator, as its tested releases ship it."""


class Collator:
    def __init__(self, tag="base"):
        self.tag = tag

    def __call__(self, examples):
        return {"collated": list(examples), "by": type(self).__name__, "tag": self.tag}


class SubCollator(Collator):
    """Inherits ``__call__``: a patch on ``SubCollator.__call__`` must not leave an own attribute behind."""
