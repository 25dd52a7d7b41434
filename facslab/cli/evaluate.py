"""``facslab evaluate``: a registered (or saved) emotion model on another dataset's test split."""

from __future__ import annotations

from jsonargparse import ArgumentParser


def _evaluate(args, parser=None) -> int:
    from facslab.cross_dataset import check_class_model, evaluate, log_evaluation, own_test, read_datamodule
    from facslab.demo_chain import runs_page_hint
    from facslab.mlflow_store import setup_tracking
    from facslab.model_uri import load_predictor

    setup_tracking(args.tracking_uri, args.experiment)
    own = own_test(args.model)  # the version the alias names now, before the model is loaded
    predictor = load_predictor(args.model, args.runtime)
    check_class_model(predictor)
    dm = read_datamodule(args.data, predictor.alignment.size)
    dm.setup("fit")
    result = evaluate(predictor, dm)
    run_id = log_evaluation(result, args.model, args.data, dm, own)
    metrics = result.metrics
    print(result.mapping.describe())
    print(f"{args.model} on the test split of {type(dm).__name__} ({args.data}): {int(metrics['test_rows'])} rows "
          f"({int(metrics['test_rows_left_out'])} of classes the model does not know left out)")
    print(f"accuracy {metrics['test_accuracy']:.3f} (95 % over subjects {metrics['test_accuracy_ci_lo']:.3f}-"
          f"{metrics['test_accuracy_ci_hi']:.3f}), macro F1 {metrics['test_macro_f1']:.3f}, mean class accuracy "
          f"{metrics['test_mean_class_accuracy']:.3f}")
    print(f"logged as run {run_id} of experiment {args.experiment}; {runs_page_hint(args.experiment)}")
    return 0


#: the commands ``add_commands`` adds -> each one's line in ``facslab --help`` (see ``facslab.cli``)
COMMANDS = {
    'evaluate': "Score an emotion model on another dataset's test split (cross-dataset).",
}


def add_commands(sub) -> dict:
    """The group's subcommands on ``sub``: name -> (parser, handler)."""
    evaluate = ArgumentParser(exit_on_error=False, description=COMMANDS["evaluate"])
    evaluate.add_argument("--model", required=True,
                          help="model URI (models:/NAME@ALIAS, runs:/ID/model) or a local model folder")
    evaluate.add_argument("--data", required=True,
                          help="YAML with class_path (an emotion datamodule) and init_args; image_size defaults "
                               "to the model's")
    evaluate.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto")
    evaluate.add_argument("--tracking_uri", type=str | None, default=None, help="MLflow store (default: mlruns/)")
    evaluate.add_argument("--experiment", default="facslab")
    sub.add_subcommand("evaluate", evaluate, help=evaluate.description)
    return {"evaluate": (evaluate, _evaluate)}
