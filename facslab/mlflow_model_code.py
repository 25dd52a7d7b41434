"""MLflow "models from code" entry point: the pyfunc model is this file's ``set_model`` object, so
nothing is pickled and ``mlflow models serve`` imports the installed facslab package."""

import mlflow

from facslab.serving import FacePyfuncModel

mlflow.models.set_model(FacePyfuncModel())
