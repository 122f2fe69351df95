"""A streaming evaluation for a model with its state as an input and an output (a recurrent cell, a VAD).

    quant gate cell.onnx out/model.int8.onnx --data stream.npz --labels label \
        --eval-fn examples/eval_fn/streaming.py:streaming_accuracy --max-drop 1

The model takes ``x`` (one frame) and ``h`` (the state) and returns ``logits`` and the next state. Scored per
sample, every frame gets the FP32 state recorded in the data; deployed, the model gets its own state back.
This function runs the frames in file order and carries the state of the model being scored (FP32 or INT8),
so the INT8 score includes the error the state accumulates.
"""
import numpy as np


def streaming_accuracy(run, data):
    """Percent of frames whose streamed decision matches the label (higher is better)."""
    state, hits = None, 0
    for feeds, label in data.samples():  # one frame at a time, in file order, each with a batch axis of 1
        if state is None:
            state = np.zeros_like(feeds["h"])  # the stream starts from a zero state, as deployed
        logits, state = run({"x": feeds["x"], "h": state})  # outputs in the model's order
        hits += int(logits.argmax(1)[0] == label)
    return 100.0 * hits / len(data)


streaming_accuracy.higher_is_better = True
