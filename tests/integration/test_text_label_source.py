"""A user DataSource whose 'label' holds text (a recognizer's lines) is read, as a data loader's is."""
import numpy as np

from quant.datasets import DataSource, open_source


class Lines(DataSource):
    description = "two lines"
    keys = ["x", "label"]

    def __len__(self):
        return 2

    def sample(self, index):
        return {"x": np.full((1, 4), index, np.float32), "label": np.asarray(["hello", "world"][index])}

    def column(self, key):
        return np.asarray(["hello", "world"]) if key == "label" else None


def test_text_labels_of_a_user_source_are_kept():
    source = open_source(Lines())
    assert source.sample(1)["label"] == "world"
    assert list(source.column("label")) == ["hello", "world"]
