"""Which model URIs the store's file may answer: those naming one version's model, as MLflow reads
them. A path inside a model, a stage or ``latest`` is left to MLflow each time (the file once kept
``models:/NAME@ALIAS/sub`` as the model's own folder)."""

import pytest

from facslab.store_answers import names_a_version, store_version


@pytest.mark.parametrize("uri, names_one", [
    ("models:/facslab-au@champion", True),
    ("models:/facslab-au/3", True),
    ("models:/facslab-au/3/", True),  # the apps strip a trailing slash, as logged_folder does
    ("models:/team@lab@champion", True),  # MLflow allows "@" in a name; the alias is after the last
    ("models:/facslab-au/latest", False),
    ("models:/facslab-au/Production", False),
    ("models:/facslab-au/3/facslab", False),
    ("models:/facslab-au@champion/facslab", False),
    ("models:/m-0123456789abcdef", False),  # a logged model's id
    ("runs:/0123/model", False),
    ("/models/facslab-au", False),
])
def test_only_uris_of_one_version_are_answered_from_the_file(uri, names_one):
    assert names_a_version(uri) is names_one


def test_a_path_inside_a_model_is_never_looked_up_as_the_model():
    with pytest.raises(ValueError, match="a path inside a model"):
        store_version("models:/facslab-au@champion/facslab")
