"""A deliberately naive implementation of format version 1: plain Python loops over ints.

It shares no code with ``hwgen.reference`` (beyond reading the typed model), so the two
agreeing on random models is evidence that both follow the spec.
"""

from hwgen.model import Conv2d, Dense, MaxPool2d


def naive_scores(model, image) -> list[int]:
    """The output layer's scores for one image given as nested lists or an array [C][H][W]."""
    c_in, h_in, w_in = model.input.shape
    flat = [int(v) for v in image.reshape(-1)]
    x = [[[flat[(c * h_in + y) * w_in + xx] for xx in range(w_in)] for y in range(h_in)]
         for c in range(c_in)]
    if model.input.binarize_at is not None:
        b = model.input.binarize_at
        x = [[[1 if v >= b else -1 for v in row] for row in plane] for plane in x]
    for layer in model.layers:
        if isinstance(layer, Dense):
            vec = [v for plane in x for row in plane for v in row]
            out = []
            for j in range(layer.weight.shape[0]):
                acc = 0
                for i in range(len(vec)):
                    acc += int(layer.weight[j, i]) * vec[i]
                if layer.threshold is None:
                    out.append(acc + (0 if layer.bias is None else int(layer.bias[j])))
                else:
                    out.append(1 if int(layer.sign[j]) * acc >= int(layer.threshold[j]) else -1)
            if layer.threshold is None:
                return out
            x = [[[v]] for v in out]
        elif isinstance(layer, Conv2d):
            cout, cin, kh, kw = layer.weight.shape
            (sh, sw), (ph, pw) = layer.stride, layer.padding
            h, w = len(x[0]), len(x[0][0])

            def at(c, y, xx):
                if 0 <= y - ph < h and 0 <= xx - pw < w:
                    return x[c][y - ph][xx - pw]
                return layer.pad_value

            ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            out = []
            for o in range(cout):
                plane = []
                for oy in range(ho):
                    row = []
                    for ox in range(wo):
                        acc = 0
                        for c in range(cin):
                            for ky in range(kh):
                                for kx in range(kw):
                                    acc += int(layer.weight[o, c, ky, kx]) * at(
                                        c, oy * sh + ky, ox * sw + kx)
                        row.append(1 if int(layer.sign[o]) * acc >= int(layer.threshold[o])
                                   else -1)
                    plane.append(row)
                out.append(plane)
            x = out
        elif isinstance(layer, MaxPool2d):
            (kh, kw), (sh, sw) = layer.kernel, layer.stride
            h, w = len(x[0]), len(x[0][0])
            ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
            x = [[[1 if any(plane[oy * sh + ky][ox * sw + kx] == 1
                            for ky in range(kh) for kx in range(kw)) else -1
                   for ox in range(wo)] for oy in range(ho)] for plane in x]
        else:
            raise TypeError(layer)
    raise AssertionError("model has no output layer")


def naive_predict(scores: list[int]) -> int:
    best = 0
    for j in range(1, len(scores)):
        if scores[j] > scores[best]:
            best = j
    return best
