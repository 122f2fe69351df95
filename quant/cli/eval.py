"""quant eval: FP32 vs INT8 on held-out data, printed and written as JSON."""
from __future__ import annotations

from quant.cli.common import add_data_options, add_device_option, input_map_from_args, preprocess_from_args, stdout


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="compare an INT8 model against FP32 on held-out data",
                                   description="Run both models on the held-out data and report top-1 (with labels), "
                                               "argmax agreement, cosine similarity, SQNR and abs errors per output, "
                                               "and the worst samples.")
    parser.add_argument("fp32_model", help="FP32 ONNX model")
    parser.add_argument("int8_model", help="INT8 Q/DQ ONNX model (model.int8.onnx), or the engine for --runtime tensorrt")
    add_data_options(parser)
    parser.add_argument("--labels", help="labels: a .npy file or a column/key of the data (default: a 'label' column "
                                         "if there is one)")
    parser.add_argument("--runtime", default="emulate", choices=["emulate", "ort-int8", "openvino", "tensorrt"],
                        help="how to run the INT8 model: emulate = exact Q/DQ in float (TensorRT's arithmetic, "
                             "default); ort-int8 = ONNX Runtime's integer kernels; openvino = OpenVINO's CPU INT8 kernels; "
                             "tensorrt = a built engine on the GPU")
    add_device_option(parser)
    parser.add_argument("--topk", default="1", metavar="K[,K]", help="top-k accuracies to report (default 1)")
    parser.add_argument("--output-json", metavar="FILE", help="also write the results as JSON (atomically)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.errors import QuantError
    from quant.core.io import dumps, write_file_atomic
    from quant.pipeline import evaluate

    try:
        topk = tuple(int(k) for k in args.topk.split(","))
    except ValueError:
        raise QuantError(f"--topk takes comma-separated integers, got '{args.topk}'", hint="e.g. --topk 1,5") from None
    report = evaluate(args.fp32_model, args.int8_model, args.data, labels=args.labels, runtime=args.runtime,
                      batch_size=args.batch_size, num_samples=args.num_samples, seed=args.seed,
                      input_map=input_map_from_args(args), preprocess=preprocess_from_args(args), split=args.split,
                      topk=topk, progress=True, device=args.device)
    text = dumps(report.to_json())
    if args.output_json:
        write_file_atomic(args.output_json, text)
    stdout(text.rstrip() if args.json else report.format_text())
    return 0
