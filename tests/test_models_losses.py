"""Losses: SSIM against scikit-image, MS-SSIM, L1/MSE, perceptual loss, combined loss."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy import ndimage
from skimage.metrics import structural_similarity

from decrappify.config.model import LossConfig
from decrappify.errors import InputError, ModelFileError
from decrappify.models import build_loss, ms_ssim, ssim
from decrappify.models.losses import (
    MS_SSIM_WEIGHTS,
    FeatureLoss,
    gaussian_window,
    gram_matrix,
    ms_ssim_scales,
)
from decrappify.models.vgg import VGG16BNFeatures, load_vgg16_bn_features


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def _pair(rng: np.random.Generator, shape: tuple[int, int], noise: float = 0.1) -> tuple:
    smooth = ndimage.gaussian_filter(rng.random(shape), 2.0)
    a = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    b = a + noise * rng.standard_normal(shape)
    return a.astype(np.float32), b.astype(np.float32)


def _t(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays))[:, None]


def test_gaussian_window_matches_scipy() -> None:
    impulse = np.zeros(11)
    impulse[5] = 1
    expected = ndimage.gaussian_filter1d(impulse, 1.5, truncate=3.5, mode="constant")
    np.testing.assert_allclose(gaussian_window(11, 1.5).numpy(), expected, atol=1e-7)


@pytest.mark.parametrize(("shape", "data_range"), [((64, 64), 1.0), ((48, 80), 2.0)])
def test_ssim_matches_skimage(rng: np.random.Generator, shape: tuple, data_range: float) -> None:
    pairs = [_pair(rng, shape, noise) for noise in (0.05, 0.2, 0.5)]
    ours = ssim(
        _t(*[b for _, b in pairs]),
        _t(*[a for a, _ in pairs]),
        data_range=data_range,
        reduction="none",
    )
    assert ours.shape == (3,)
    for value, (a, b) in zip(ours, pairs, strict=True):
        expected = structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
        assert value.item() == pytest.approx(expected, abs=1e-3)
        assert value.item() == pytest.approx(expected, abs=1e-5)  # in fact much closer
    assert ssim(_t(pairs[0][1]), _t(pairs[0][0]), data_range=data_range).item() == pytest.approx(
        ours[0].item()
    )


def test_ssim_of_identical_images_is_one(rng: np.random.Generator) -> None:
    x = torch.from_numpy(rng.random((2, 3, 32, 40)).astype(np.float32))
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_input_errors() -> None:
    with pytest.raises(
        InputError, match=re.escape("ssim: images must be at least 11x11 pixels, got 8x30")
    ):
        ssim(torch.rand(1, 1, 8, 30), torch.rand(1, 1, 8, 30))
    message = (
        "ssim: expected prediction and target of the same shape (N, C, H, W), "
        "got (1, 1, 16, 16) and (1, 1, 16, 17)"
    )
    with pytest.raises(InputError, match=re.escape(message)):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 17))


@pytest.mark.parametrize(
    ("side", "scales"), [(176, 5), (400, 5), (175, 4), (64, 3), (22, 2), (21, 1), (11, 1), (10, 0)]
)
def test_ms_ssim_scale_count(side: int, scales: int) -> None:
    assert ms_ssim_scales(side, side + 50) == scales


def _ms_ssim_reference(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Independent NumPy MS-SSIM (Wang et al. 2003) with a valid-region Gaussian window."""

    def filt(x: np.ndarray) -> np.ndarray:
        y = ndimage.gaussian_filter(x.astype(np.float64), 1.5, truncate=3.5, mode="reflect")
        return y[5:-5, 5:-5]

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    result = 1.0
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        mx, my = filt(a), filt(b)
        vx = filt(a * a) - mx**2
        vy = filt(b * b) - my**2
        cov = filt(a * b) - mx * my
        cs = (2 * cov + c2) / (vx + vy + c2)
        if level == len(MS_SSIM_WEIGHTS) - 1:
            value = (((2 * mx * my + c1) / (mx**2 + my**2 + c1)) * cs).mean()
        else:
            value = cs.mean()
            h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
            a = a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            b = b[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        result *= max(value, 1e-4) ** weight
    return float(result)


def test_ms_ssim_matches_reference(rng: np.random.Generator) -> None:
    a, b = _pair(rng, (181, 190), noise=0.15)
    expected = _ms_ssim_reference(b, a)
    assert ms_ssim(_t(b), _t(a)).item() == pytest.approx(expected, abs=1e-4)


def test_ms_ssim_falls_back_to_fewer_scales(rng: np.random.Generator) -> None:
    # one scale fits: MS-SSIM is plain SSIM
    a, b = _pair(rng, (20, 40), noise=0.2)
    assert ms_ssim(_t(b), _t(a)).item() == pytest.approx(ssim(_t(b), _t(a)).item(), abs=1e-6)
    # three scales: weights 0.0448, 0.2856, 0.3001 renormalised
    x, y = _pair(rng, (64, 64), noise=0.2)
    px, py = _t(y), _t(x)
    cs = []
    for _ in range(2):
        value = _cs(px, py)
        cs.append(value)
        px, py = F.avg_pool2d(px, 2), F.avg_pool2d(py, 2)
    last = ssim(px, py).item()
    w = np.array(MS_SSIM_WEIGHTS[:3]) / sum(MS_SSIM_WEIGHTS[:3])
    expected = cs[0] ** w[0] * cs[1] ** w[1] * last ** w[2]
    assert ms_ssim(_t(y), _t(x)).item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(
        InputError, match=re.escape("ms_ssim: images must be at least 11x11 pixels")
    ):
        ms_ssim(torch.rand(1, 1, 10, 64), torch.rand(1, 1, 10, 64))


def _cs(x: torch.Tensor, y: torch.Tensor) -> float:
    from decrappify.models.losses import _ssim_and_cs

    return _ssim_and_cs(x, y, gaussian_window(), 1.0)[1].mean().item()


def test_ssim_losses_are_differentiable(rng: np.random.Generator) -> None:
    a, b = _pair(rng, (64, 64), noise=0.3)
    for fn in (ssim, ms_ssim):
        pred = _t(b).requires_grad_(True)
        (1 - fn(pred, _t(a))).backward()
        assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_combined_pixel_losses_are_exact() -> None:
    pred = torch.zeros(2, 1, 16, 16, requires_grad=True)
    target = torch.full((2, 1, 16, 16), 0.5)
    loss = build_loss(LossConfig(weights={"l1": 2.0, "mse": 4.0}))
    total, terms = loss(pred, target)
    assert terms == {"l1": 0.5, "mse": 0.25, "total": 2.0}
    assert total.item() == 2.0
    total.backward()
    # d/dp [2 |p - t| + 4 (p - t)^2] averaged over 512 pixels, at p - t = -0.5
    torch.testing.assert_close(pred.grad, torch.full_like(pred, (-2.0 - 4.0) / 512))


def test_combined_ssim_terms(rng: np.random.Generator) -> None:
    a, b = _pair(rng, (64, 64), noise=0.2)
    cfg = LossConfig(weights={"l1": 1.0, "ssim": 0.5, "ms_ssim": 0.25, "feature": 0.0})
    total, terms = build_loss(cfg)(_t(b), _t(a))
    assert set(terms) == {"l1", "ssim", "ms_ssim", "total"}
    assert terms["ssim"] == pytest.approx(1 - ssim(_t(b), _t(a)).item(), abs=1e-6)
    assert terms["ms_ssim"] == pytest.approx(1 - ms_ssim(_t(b), _t(a)).item(), abs=1e-6)
    expected = terms["l1"] + 0.5 * terms["ssim"] + 0.25 * terms["ms_ssim"]
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert terms["total"] == pytest.approx(expected, rel=1e-6)
    message = (
        "loss: expected prediction and target of the same shape (N, C, H, W), "
        "got (1, 1, 16, 16) and (1, 1, 32, 32)"
    )
    with pytest.raises(InputError, match=re.escape(message)):
        build_loss(cfg)(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 32, 32))


def test_feature_loss_without_weights_file_is_a_clear_error() -> None:
    message = (
        "loss.weights.feature: the perceptual (feature) loss needs ImageNet VGG16-bn weights from "
        "a local file; pass vgg_weights=PATH to a torchvision vgg16_bn state dict (.pth or "
        ".safetensors, e.g. vgg16_bn-6c64b313.pth) or set the feature weight to 0"
    )
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        build_loss(LossConfig(weights={"l1": 1.0, "feature": 1.0}))


def _vgg_state(depth_layer: int, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = VGG16BNFeatures([depth_layer]).state_dict()
    for key, value in state.items():
        if key.endswith("running_var"):
            state[key] = 1 + 0.1 * torch.rand_like(value)
        elif key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn_like(value)
    return dict(state)


@pytest.fixture(scope="module")
def small_vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg16_bn_small.safetensors"
    save_file(_vgg_state(12), str(path))
    return path


def test_vgg_weights_path_with_a_tilde_is_in_the_home_folder(
    small_vgg_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(small_vgg_file.parent))
    cfg = LossConfig(weights={"feature": 1.0}, feature_layers=[5], feature_layer_weights=[1.0])
    loss = build_loss(cfg, vgg_weights=f"~/{small_vgg_file.name}")
    assert isinstance(loss.feature_loss, FeatureLoss)


def test_vgg_names_follow_torchvision() -> None:
    shapes = {k: tuple(v.shape) for k, v in VGG16BNFeatures([42]).state_dict().items()}
    assert shapes["features.0.weight"] == (64, 3, 3, 3)
    assert shapes["features.1.running_mean"] == (64,)
    assert shapes["features.7.weight"] == (128, 64, 3, 3)
    assert shapes["features.40.weight"] == (512, 512, 3, 3)
    assert shapes["features.41.num_batches_tracked"] == ()
    n_params = sum(p.numel() for p in VGG16BNFeatures([42]).parameters())
    assert n_params == 14_723_136  # torchvision vgg16_bn.features


def test_feature_loss_values_and_gradients(small_vgg_file: Path, rng: np.random.Generator) -> None:
    cfg = LossConfig(
        weights={"feature": 1.0},
        feature_layers=[5, 12],
        feature_layer_weights=[5.0, 15.0],
    )
    loss = build_loss(cfg, vgg_weights=small_vgg_file)
    feature = loss.feature_loss
    assert isinstance(feature, FeatureLoss)
    a, b = _pair(rng, (32, 32), noise=0.2)
    target, pred = _t(a), _t(b).requires_grad_(True)

    same, terms = loss(target, target)
    assert same.item() == 0.0 and terms == {"feature": 0.0, "total": 0.0}

    parts = feature.components(pred, target)
    assert list(parts) == ["pixel", "feat_5", "gram_5", "feat_12", "gram_12"]
    extractor = feature.extractor
    fp, ft = extractor(pred), extractor(target)
    assert fp[0].shape == (1, 64, 32, 32) and fp[1].shape == (1, 128, 16, 16)
    expected = {
        "pixel": F.l1_loss(pred, target),
        "feat_5": 5 * F.l1_loss(fp[0], ft[0]),
        "gram_5": 5e3 * 25 * F.l1_loss(gram_matrix(fp[0]), gram_matrix(ft[0])),
        "feat_12": 15 * F.l1_loss(fp[1], ft[1]),
        "gram_12": 5e3 * 225 * F.l1_loss(gram_matrix(fp[1]), gram_matrix(ft[1])),
    }
    for key, value in expected.items():
        assert parts[key].item() == pytest.approx(value.item(), rel=1e-5), key
    total, terms = loss(pred, target)
    assert total.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-5)
    total.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in extractor.parameters())
    loss.train()
    assert not extractor.training  # ImageNet BatchNorm statistics are never updated


def test_gram_matrix() -> None:
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(x), expected)


def test_default_layers_load_from_a_full_pth_file(tmp_path: Path) -> None:
    state = _vgg_state(42)
    state["classifier.0.weight"] = torch.zeros(8, 8)  # ignored
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    extractor = load_vgg16_bn_features(path, [22, 32, 42])
    assert len(extractor.features) == 43
    feats = extractor(torch.rand(1, 1, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(1, 256, 8, 8), (1, 512, 4, 4), (1, 512, 2, 2)]
    assert torch.equal(extractor.features[40].weight, state["features.40.weight"])


def test_vgg_file_errors(tmp_path: Path, small_vgg_file: Path) -> None:
    message = (
        f"{small_vgg_file}: not a vgg16_bn ImageNet state dict: missing keys features.14.weight, "
        "features.14.bias, features.15.weight (and 15 more)"
    )
    with pytest.raises(ModelFileError, match=f"^{re.escape(message)}$"):
        load_vgg16_bn_features(small_vgg_file, [22])
    resnet_like = tmp_path / "resnet.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(resnet_like))
    with pytest.raises(
        ModelFileError,
        match=re.escape(
            f"{resnet_like}: not a vgg16_bn ImageNet state dict: missing keys features.0.weight"
        ),
    ):
        build_loss(LossConfig(weights={"feature": 1.0}), vgg_weights=resnet_like)
    missing = tmp_path / "vgg16_bn.pth"
    with pytest.raises(
        ModelFileError, match=f"^{re.escape(f'{missing}: weights file not found')}$"
    ):
        build_loss(LossConfig(weights={"feature": 1.0}), vgg_weights=missing)
