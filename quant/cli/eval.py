"""quant eval: FP32 vs INT8 on held-out data, printed and written as JSON."""
from __future__ import annotations

from quant.cli.common import (add_data_options, add_device_option, add_force_option, add_output_options,
                              add_ray_options, input_files, input_map_from_args, preprocess_from_args, ray_from_args,
                              stdout)
from quant.cli import validators as V


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="compare an INT8 model against FP32 on held-out data",
                                   description="Run both models on the held-out data and report top-1 (with labels), "
                                               "argmax agreement, cosine similarity, SQNR and abs errors per output, "
                                               "and the worst samples.")
    parser.add_argument("fp32_model", help="FP32 ONNX model")
    parser.add_argument("int8_model", help="INT8 Q/DQ ONNX model (model.int8.onnx), a calibration folder (every "
                                           "method of a multi-method folder against one FP32 pass), or the engine "
                                           "for --runtime tensorrt")
    add_data_options(parser)
    parser.add_argument("--labels", help="labels: a .npy/.txt/.csv file or a column/key of the data (default: a 'label' "
                                         "column, or the data's one ClassLabel column)")
    parser.add_argument("--runtime", default="emulate", choices=["emulate", "ort-int8", "openvino", "tensorrt"],
                        help="how to run the INT8 model: emulate = exact Q/DQ in float (TensorRT's arithmetic, "
                             "default); ort-int8 = ONNX Runtime's integer kernels; openvino = OpenVINO's CPU INT8 kernels; "
                             "tensorrt = a built engine on the GPU")
    parser.add_argument("--topk", default="1", type=V.int_list(1, 1000, "topk"), metavar="K[,K]", help="top-k accuracies to report (default 1)")
    add_output_options(parser)
    from quant.cli.eval_fn import add_eval_fn_options

    add_eval_fn_options(parser)
    add_device_option(parser)
    parser.add_argument("--output-json", metavar="FILE", help="also write the results as JSON (atomically)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_force_option(parser)
    add_ray_options(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from quant.core.errors import QuantError
    from quant.core.io import check_output_file, dumps, json_output, write_file_atomic, writing
    from quant.pipeline import evaluate

    topk = tuple(args.topk)  # checked when parsed (validators.int_list)
    from pathlib import Path

    from quant.pipeline.folder_eval import evaluate_folder, model_identity

    if args.output_json is not None:  # fail fast, before the evaluation
        from quant.cli.eval_fn import input_file

        check_output_file(args.output_json, input_files(args.fp32_model, args.int8_model, args.data, args.labels,
                                                        args.preprocess, input_file(args.eval_fn)), args.force,
                          "--output-json")
    options = dict(labels=args.labels, runtime=args.runtime, batch_size=args.batch_size, num_samples=args.num_samples,
                   seed=args.seed, input_map=input_map_from_args(args), preprocess=preprocess_from_args(args),
                   split=args.split, topk=topk, progress=True, output_name=args.output_name, class_axis=args.class_axis,
                   device=args.device)
    ray = ray_from_args(args)
    if args.eval_fn is not None:
        options.update(eval_fn=args.eval_fn, lower_is_better=args.lower_is_better)
    elif args.lower_is_better is not None:
        flag = "--lower-is-better" if args.lower_is_better else "--higher-is-better"
        raise QuantError(f"{flag} says which way an --eval-fn score goes, and no --eval-fn is given",
                         hint="add --eval-fn FILE.py:FUNCTION, or drop the flag (eval's own metrics know their direction)")
    int8_model = Path(args.int8_model)
    if int8_model.is_dir() and args.runtime != "tensorrt" and (int8_model / "model.int8.onnx").is_file():
        int8_model = int8_model / "model.int8.onnx"  # one method's folder: its model
    if int8_model.is_dir() and args.runtime != "tensorrt":
        if args.eval_fn is not None:
            raise QuantError("--eval-fn evaluates one INT8 model; a folder of several methods is compared without it",
                             hint="pass one method's model.int8.onnx with --eval-fn")
        if ray is not None:
            raise QuantError("--ray evaluates one INT8 model; a folder of several methods is evaluated in this process",
                             hint="pass one method's model.int8.onnx, or drop --ray")
        report = evaluate_folder(args.fp32_model, int8_model, args.data, **options)
        data = report.to_json()
    else:
        report = evaluate(args.fp32_model, args.int8_model if args.runtime == "tensorrt" else int8_model, args.data,
                          ray=ray, **options)
        data = report.to_json()
        if Path(args.fp32_model).is_file() and int8_model.is_file():  # which models were compared
            data["models"] = {"fp32": model_identity(args.fp32_model), "int8": model_identity(int8_model)}
    text = dumps(data)
    if args.output_json is not None:
        with writing(force=args.force):
            write_file_atomic(args.output_json, json_output(data))
    stdout(text.rstrip() if args.json else report.format_text())
    return 0
