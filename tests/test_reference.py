"""The integer reference against the naive loops, the conformance suite, and its own engines."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwgen import model as model_io
from hwgen.random_models import conv, dense, lfc_model, pool, random_images, random_model
from hwgen.reference import ENGINES, Reference, pack_pm1, packed_dot, predict, run

from .conftest import CONFORMANCE
from .naive import naive_predict, naive_scores

VALID = sorted(p.stem for p in CONFORMANCE.glob("*.npz") if not p.stem.endswith(".expected"))

# (input shape, hidden layers, binarize_at): every layer kind, odd sizes, strides, paddings.
ARCHES = {
    "dense-binarized": ((1, 7, 9), [dense(13), dense(5)], 100),
    "dense-raw": ((1, 5, 7), [dense(11)], None),
    "dense-raw-only-output": ((2, 3, 3), [], None),
    "conv-raw-pad0": ((1, 9, 8), [conv(3, 3, padding=1, pad_value=0), pool(2)], None),
    "conv-raw-pad200-stride2": ((2, 9, 11), [conv(4, 3, stride=2, padding=1, pad_value=200)],
                                None),
    "conv-binarized-pad-minus": ((1, 11, 10), [conv(5, 3, padding=1, pad_value=-1), pool(2),
                                               conv(3, (3, 2), stride=(2, 1), padding=(1, 2),
                                                    pad_value=1), dense(7)], 90),
    "conv-overlapping-pool": ((3, 10, 9), [conv(4, 1), pool(3, 2), dense(6)], 60),
    "conv-1x1-odd": ((1, 7, 5), [conv(2, (1, 3), stride=(3, 1)), conv(3, 2, stride=2,
                                                                         padding=1, pad_value=1)],
                     17),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_reference_matches_naive_loops(arch, engine):
    rng = np.random.default_rng(sorted(ARCHES).index(arch))
    shape, layers, binarize_at = ARCHES[arch]
    model = random_model(rng, shape, layers, classes=5, binarize_at=binarize_at)
    images = random_images(rng, model.input, 12)
    scores = run(model, images, engine=engine)
    expected = np.array([naive_scores(model, image) for image in images])
    np.testing.assert_array_equal(scores, expected)
    assert list(predict(scores)) == [naive_predict(list(s)) for s in expected]


@st.composite
def models_and_images(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
    binarize_at = draw(st.one_of(st.none(), st.integers(0, 256)))
    layers = []
    shape = (h, w)
    if draw(st.booleans()):
        k = draw(st.integers(1, 3))
        s, p = draw(st.integers(1, 2)), draw(st.integers(0, 2))
        pad = draw(st.sampled_from([-1, 1])) if binarize_at is not None else \
            draw(st.integers(0, 255))
        if min(shape) + 2 * p >= k:
            layers.append(conv(draw(st.integers(1, 5)), k, s, p, pad))
            shape = tuple((d + 2 * p - k) // s + 1 for d in shape)
            if draw(st.booleans()) and min(shape) >= 2:
                layers.append(pool(2, draw(st.integers(1, 2))))
    if draw(st.booleans()):
        layers.append(dense(draw(st.integers(1, 20))))
    model = random_model(rng, (c, h, w), layers, classes=draw(st.integers(1, 6)),
                         binarize_at=binarize_at, bias=draw(st.booleans()))
    return model, random_images(rng, model.input, 3)


@settings(max_examples=40, deadline=None)
@given(models_and_images())
def test_reference_matches_naive_on_generated_models(case):
    model, images = case
    expected = np.array([naive_scores(model, image) for image in images])
    for engine in ENGINES:
        np.testing.assert_array_equal(run(model, images, engine=engine), expected)


@pytest.mark.parametrize("name", VALID)
@pytest.mark.parametrize("engine", ENGINES)
def test_conformance_scores(conformance_dir, name, engine):
    model = model_io.load(conformance_dir / f"{name}.npz")
    expected = np.load(conformance_dir / f"{name}.expected.npz", allow_pickle=False)
    scores = run(model, expected["images"], engine=engine)
    np.testing.assert_array_equal(scores, expected["scores"])
    np.testing.assert_array_equal(predict(scores), expected["predictions"])


def test_conformance_cases_are_all_found(conformance_dir):
    assert len(VALID) >= 11


def test_argmax_ties_go_to_the_lowest_index():
    scores = np.array([[3, 5, 5, 1], [-2, -2, -2, -2], [0, 1, 2, 2]])
    assert list(predict(scores)) == [1, 0, 2]


def test_packed_dot_is_dot_product_of_pm1_vectors():
    rng = np.random.default_rng(5)
    for n in (1, 7, 63, 64, 65, 130):
        x = rng.choice(np.array([-1, 1], np.int8), size=(9, n))
        w = rng.choice(np.array([-1, 1], np.int8), size=(4, n))
        expected = x.astype(np.int64) @ w.T.astype(np.int64)
        np.testing.assert_array_equal(packed_dot(pack_pm1(x), pack_pm1(w), n), expected)


def test_engines_agree_on_lfc_sized_network():
    rng = np.random.default_rng(11)
    model = lfc_model(rng)
    images = random_images(rng, model.input, 200)
    np.testing.assert_array_equal(run(model, images, "gemm"), run(model, images, "packed"))


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(3)
    model = random_model(rng, (1, 6, 6), [conv(3, 3, padding=1), dense(9)], binarize_at=128)
    images = random_images(rng, model.input, 50)
    whole = run(model, images)
    reference = Reference(model)
    reference.chunk = 7
    np.testing.assert_array_equal(reference.run(images), whole)


def test_trace_gives_every_layer_and_ends_in_the_scores():
    rng = np.random.default_rng(8)
    model = random_model(rng, (1, 8, 8), [conv(4, 3, padding=1, pad_value=1), pool(2),
                                          dense(6)], binarize_at=50)
    image = random_images(rng, model.input, 1)[0]
    trace = Reference(model).trace(image)
    assert [t.op for t in trace] == ["conv2d", "maxpool2d", "dense", "dense"]
    assert [t.output.shape[1:] for t in trace[:3]] == [s for s in model.shapes()[1:4]]
    assert trace[1].acc is None
    np.testing.assert_array_equal(trace[-1].output[0], naive_scores(model, image))
    for t in trace[:3]:
        assert set(np.unique(t.output)) <= {-1, 1}
