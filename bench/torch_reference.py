"""A plain PyTorch reference of the authors' training steps, for timing our JAX steps against
PyTorch on the same CPU (STYLE.md: "side by side with the same network in PyTorch in one run").

Benchmarking only: PyTorch is the optional `bench` extra (setup.cfg); nothing in
seqdis_jax/, experiments/ or tests/ imports it. Written from ../shared/REFERENCE_FACTS.md
(sections 1, 2 and 4), not from the authors' code, to do the same work as our `:code` variants:

  dsvae   experiments/sprites.py on the C-DSVAE authors' posterior (model.dynamic_posterior =
          "rnn_bilstm", static_head_activation = "leaky_relu", recurrent_init = "pytorch"):
          sum-of-squares reconstruction + KL(s) + KL(d || teacher-forced prior).
  cdsvae  experiments/cdsvae_sprites.py:code: as dsvae, plus the content view x^c and the
          motion view x^m, each encoded by its own encoder + posterior call (own BatchNorm
          batch, cdsvae.batch_norm_views = "separate"); InfoNCE (tau 0.5, cosine, 2B - 2
          negatives, `estimators.paired_views_info_nce`) on s means and on flattened d-mean
          trajectories, weight 10; the per-frame MWS penalty (`estimators.mws_per_frame_code`,
          N = 9000), weight 1. The views are fixed input tensors here (the authors' data loader
          makes them); our JAX step draws them inside the step, which this step does not pay.
  dbse    experiments/dbse_sprites.py:code: subtraction = "features" (g_t - g_1, the anchor's
          slot N(0, I) noise, a 2-layer bidirectional LSTM of hidden dd with per-step Gaussian
          heads), s from tanh(Linear(g_1)), every frame in the sequence error plus 0.2 x the
          anchor frame decoded by a second decoder call (anchor_decode = "separate"), the MSE
          divided by the batch, 0.2 on both KLs; g = 256, ds = dd = 256, LSTM size 64.

Layout NCHW. Initialisation as the authors' `init_weights`: Conv2d / Linear ~ N(0, 0.01^2), zero
biases; ConvTranspose2d, LSTM, LSTMCell and RNN keep PyTorch's defaults. Parameter counts equal
our Flax models' except that PyTorch's recurrent cells hold two biases (b_ih, b_hh) where Flax's
hold one: `count_parameters(..., flax_biases=True)` leaves the b_hh out.

    python bench/torch_reference.py --method=cdsvae --batch=32 --steps=5 [--threads=2] [--bf16]
    python bench/torch_reference.py --check   # 30 steps on a fixed batch: the loss decreases
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# Sizes and loss settings of our Sprites configs (module docstring); make_step's **sizes
# override any of them.
_DSVAE = dict(feature_dim=128, static_dim=256, dynamic_dim=32, hidden_dim=256,
              learning_rate=1e-3)
SETTINGS = {
    "dsvae": dict(_DSVAE),
    "cdsvae": dict(_DSVAE, contrastive_weight=10.0, mws_weight=1.0, temperature=0.5,
                   num_train=9000),
    "dbse": dict(feature_dim=256, static_dim=256, dynamic_dim=256, hidden_dim=64,
                 learning_rate=2e-3, anchor_weight=0.2, kl_weight=0.2),
}
_LOG_2PI = math.log(2.0 * math.pi)


def scaled(channels: int, width: float) -> int:
    """Channel count after the `width` multiplier (seqdis_jax/nn/video.py::scaled)."""
    return max(1, int(round(channels * width)))


# --- Networks (REFERENCE_FACTS.md section 1) -------------------------------------------------


class Encoder(nn.Module):
    """(N, 3, 64, 64) -> (N, g): 4 x [Conv(k4, s2, p1) + BN + LeakyReLU(0.2)], 64-128-256-512
    channels, then Conv(k4, s1, p0) -> g + BN + tanh."""

    def __init__(self, feature_dim: int, width: float, channels: int = 3):
        super().__init__()
        layers, c_in = [], channels
        for c in (64, 128, 256, 512):
            c_out = scaled(c, width)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        layers += [nn.Conv2d(c_in, feature_dim, 4, 1, 0), nn.BatchNorm2d(feature_dim), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames).flatten(1)


class Decoder(nn.Module):
    """(N, D) -> (N, 3, 64, 64): ConvT(k4, s1, p0) 1x1 -> 4x4, three ConvT(k4, s2, p1) blocks
    (512-256-128-64, BN + LeakyReLU(0.2)), ConvT(k4, s2, p1) -> 3 + sigmoid."""

    def __init__(self, latent_dim: int, width: float, channels: int = 3):
        super().__init__()
        layers, c_in = [], latent_dim
        for i, c in enumerate((512, 256, 128, 64)):
            c_out = scaled(c, width)
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride, pad), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2)]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, channels, 4, 2, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(latents[:, :, None, None])


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def gaussian(prefix: str, mean: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    return {f"{prefix}_mean": mean, f"{prefix}_logvar": logvar,
            prefix: reparameterize(mean, logvar)}


class CDSVAEPosterior(nn.Module):
    """The C-DSVAE authors' posterior (REFERENCE_FACTS.md sections 2, 4): a bidirectional LSTM
    over g_1:T; s from cat(forward output at T-1, backward output at 0) through Linear +
    LeakyReLU(0.2) heads; d_t from a tanh RNN(2H -> H) over the LSTM's outputs, Linear heads."""

    def __init__(self, feature_dim: int, hidden_dim: int, static_dim: int, dynamic_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.bilstm = nn.LSTM(feature_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.s_mean = nn.Linear(2 * hidden_dim, static_dim)
        self.s_logvar = nn.Linear(2 * hidden_dim, static_dim)
        self.rnn = nn.RNN(2 * hidden_dim, hidden_dim, batch_first=True)  # tanh
        self.d_mean = nn.Linear(hidden_dim, dynamic_dim)
        self.d_logvar = nn.Linear(hidden_dim, dynamic_dim)

    def forward(self, g: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs, _ = self.bilstm(g)
        h = self.hidden_dim
        summary = torch.cat([outputs[:, -1, :h], outputs[:, 0, h:]], dim=-1)
        s_mean = F.leaky_relu(self.s_mean(summary), 0.2)
        s_logvar = F.leaky_relu(self.s_logvar(summary), 0.2)
        r, _ = self.rnn(outputs)
        return {**gaussian("s", s_mean, s_logvar),
                **gaussian("d", self.d_mean(r), self.d_logvar(r))}


class DBSEPosterior(nn.Module):
    """The DBSE authors' posterior (REFERENCE_FACTS.md section 2; our subtraction="features"):
    s from s~ = tanh(Linear(g_1)); d_1:T from a 2-layer bidirectional LSTM (hidden dd) over
    g_t - g_1 with the anchor's slot replaced by N(0, I) noise, Linear(2 dd -> dd) heads."""

    def __init__(self, feature_dim: int, hidden_dim: int, static_dim: int, dynamic_dim: int):
        super().__init__()
        self.static_mlp = nn.Linear(feature_dim, hidden_dim)
        self.s_mean = nn.Linear(hidden_dim, static_dim)
        self.s_logvar = nn.Linear(hidden_dim, static_dim)
        self.bilstm = nn.LSTM(feature_dim, dynamic_dim, num_layers=2, batch_first=True,
                              bidirectional=True)
        self.d_mean = nn.Linear(2 * dynamic_dim, dynamic_dim)
        self.d_logvar = nn.Linear(2 * dynamic_dim, dynamic_dim)

    def forward(self, g: torch.Tensor) -> dict[str, torch.Tensor]:
        g_a = g[:, 0]  # anchor "first"
        s_tilde = torch.tanh(self.static_mlp(g_a))
        inputs = torch.cat([torch.randn_like(g_a)[:, None], (g - g_a[:, None])[:, 1:]], dim=1)
        h, _ = self.bilstm(inputs)
        return {**gaussian("s", self.s_mean(s_tilde), self.s_logvar(s_tilde)),
                **gaussian("d", self.d_mean(h), self.d_logvar(h))}


class Prior(nn.Module):
    """Learned prior p(d_t | d_<t): LSTMCell(dd -> H) -> LSTMCell(H -> H) -> Linear mean /
    logvar, teacher-forced on the posterior samples (d_0 = 0), a Python loop over T."""

    def __init__(self, dynamic_dim: int, hidden_dim: int):
        super().__init__()
        self.cell1 = nn.LSTMCell(dynamic_dim, hidden_dim)
        self.cell2 = nn.LSTMCell(hidden_dim, hidden_dim)
        self.mean = nn.Linear(hidden_dim, dynamic_dim)
        self.logvar = nn.Linear(hidden_dim, dynamic_dim)

    def forward(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = d.shape
        z = d.new_zeros(b, d.shape[-1])
        h1 = c1 = h2 = c2 = d.new_zeros(b, self.cell1.hidden_size)
        means, logvars = [], []
        for step in range(t):
            h1, c1 = self.cell1(z, (h1, c1))
            h2, c2 = self.cell2(h1, (h2, c2))
            means.append(self.mean(h2))
            logvars.append(self.logvar(h2))
            z = d[:, step]
        return torch.stack(means, dim=1), torch.stack(logvars, dim=1)


class SequentialVAE(nn.Module):
    """Frame encoder -> posterior -> (teacher-forced prior, frame decoder on concat(d_t, s))."""

    def __init__(self, method: str, width: float, feature_dim: int, static_dim: int,
                 dynamic_dim: int, hidden_dim: int, channels: int = 3):
        super().__init__()
        posterior = DBSEPosterior if method == "dbse" else CDSVAEPosterior
        self.encoder = Encoder(feature_dim, width, channels)
        self.posterior = posterior(feature_dim, hidden_dim, static_dim, dynamic_dim)
        self.prior = Prior(dynamic_dim, hidden_dim)
        self.decoder = Decoder(static_dim + dynamic_dim, width, channels)
        for m in self.modules():  # the authors' init_weights; ConvTranspose2d is not a Conv2d
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, T, C, H, W) -> posterior; all B*T frames as one conv (and BatchNorm) batch."""
        b, t = x.shape[:2]
        return self.posterior(self.encoder(x.flatten(0, 1)).view(b, t, -1))

    def decode(self, s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(B, ds), (B, T, dd) -> (B, T, C, H, W), all B*T frames as one batch."""
        b, t = d.shape[:2]
        z = torch.cat([d, s[:, None].expand(b, t, s.shape[-1])], dim=-1)
        frames = self.decoder(z.flatten(0, 1))
        return frames.view(b, t, *frames.shape[1:])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.encode(x)
        out["prior_mean"], out["prior_logvar"] = self.prior(out["d"])
        out["reconstruction"] = self.decode(out["s"], out["d"])
        return out


# --- Losses (as seqdis_jax/models/*.py and seqdis_jax/estimators.py) -------------------------


def sum_squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared error summed over frames and pixels, averaged over the batch."""
    return (x_hat - x).square().flatten(1).sum(1).mean()


def kl_terms(out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form KL[q(s) || N(0, I)] and sum_t KL[q(d_t) || p(d_t | d_<t)], batch means."""
    m, lv = out["s_mean"], out["s_logvar"]
    kl_s = 0.5 * (lv.exp() + m.square() - 1.0 - lv)
    mq, lq, mp, lp = out["d_mean"], out["d_logvar"], out["prior_mean"], out["prior_logvar"]
    kl_d = 0.5 * (lp - lq + (lq.exp() + (mq - mp).square()) * torch.exp(-lp) - 1.0)
    return kl_s.sum(-1).mean(), kl_d.sum((1, 2)).mean()


def paired_views_info_nce(u: torch.Tensor, v: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent form of (C(u) + C(v)) / 2, C-DSVAE eq. (8): 2B anchors, 2B - 2 negatives."""
    b = u.shape[0]
    codes = F.normalize(torch.cat([u, v]), dim=-1, eps=1e-8)
    logits = codes @ codes.T / temperature
    index = torch.arange(2 * b)
    positive = logits[index, (index + b) % (2 * b)]
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    return (positive - torch.logsumexp(logits, dim=1)).mean() + math.log(2 * b - 1)


def log_density_matrix(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
                       ) -> torch.Tensor:
    """log N(z_i; mean_j, e^logvar_j) for every pair, (..., B, D) -> (..., B, B), by matrix
    products as `estimators.gaussian_log_density_matrix`."""
    precision = torch.exp(-logvar)
    quad = (z.square() @ precision.transpose(-1, -2)
            - 2.0 * z @ (mean * precision).transpose(-1, -2)
            + (mean.square() * precision).sum(-1)[..., None, :])
    return -0.5 * (quad + logvar.sum(-1)[..., None, :] + z.shape[-1] * _LOG_2PI)


def mws_per_frame_code(out: dict[str, torch.Tensor], dataset_size: int) -> torch.Tensor:
    """C-DSVAE's per-frame MWS penalty (REFERENCE_FACTS.md section 4): std = exp(logvar),
    + log(B N) inside a ReLU, averaged over frames and batch."""
    tm = lambda a: a.transpose(0, 1)
    log_q_s = log_density_matrix(out["s"], out["s_mean"], 2.0 * out["s_logvar"])  # (B, B)
    log_q_d = log_density_matrix(tm(out["d"]), tm(out["d_mean"]), 2.0 * tm(out["d_logvar"]))
    log_bn = math.log(out["s"].shape[0] * dataset_size)
    lse = lambda a: torch.logsumexp(a, dim=-1) - log_bn
    joint = lse(log_q_s[None] + log_q_d)  # (T, B)
    return F.relu(joint - lse(log_q_s)[None] - lse(log_q_d)).mean()


def dsvae_loss(model: SequentialVAE, inputs: dict, c: dict) -> torch.Tensor:
    x = inputs["video"]
    out = model(x)
    kl_s, kl_d = kl_terms(out)
    return sum_squared_error(x, out["reconstruction"]) + kl_s + kl_d


def cdsvae_loss(model: SequentialVAE, inputs: dict, c: dict) -> torch.Tensor:
    x = inputs["video"]
    out = model(x)
    content, motion = model.encode(inputs["content"]), model.encode(inputs["motion"])
    kl_s, kl_d = kl_terms(out)
    mi_s_x = paired_views_info_nce(out["s_mean"], content["s_mean"], c["temperature"])
    mi_d_x = paired_views_info_nce(out["d_mean"].flatten(1), motion["d_mean"].flatten(1),
                                   c["temperature"])
    return (sum_squared_error(x, out["reconstruction"]) + kl_s + kl_d
            - c["contrastive_weight"] * (mi_s_x + mi_d_x)
            + c["mws_weight"] * mws_per_frame_code(out, c["num_train"]))


def dbse_loss(model: SequentialVAE, inputs: dict, c: dict) -> torch.Tensor:
    x = inputs["video"]
    out = model(x)
    anchor = model.decode(out["s"], out["d"][:, :1])  # the second decoder call
    kl_s, kl_d = kl_terms(out)
    return (sum_squared_error(x, out["reconstruction"])
            + c["anchor_weight"] * sum_squared_error(x[:, :1], anchor)
            + c["kl_weight"] * (kl_s + kl_d))


LOSSES = {"dsvae": dsvae_loss, "cdsvae": cdsvae_loss, "dbse": dbse_loss}


# --- API ---------------------------------------------------------------------------------------


def settings(method: str, **sizes) -> dict:
    """The method's Sprites settings with `sizes` overriding; KeyError names unknown ones."""
    if method not in SETTINGS:
        raise KeyError(f"method must be one of {sorted(SETTINGS)}, got {method!r}.")
    unknown = sorted(set(sizes) - set(SETTINGS[method]))
    if unknown:
        raise KeyError(f"unknown settings {unknown} for {method}; known: "
                       f"{sorted(SETTINGS[method])}")
    return {**SETTINGS[method], **sizes}


def build_model(method: str, width: float = 1.0, **sizes) -> SequentialVAE:
    c = settings(method, **sizes)
    return SequentialVAE(method, width, c["feature_dim"], c["static_dim"], c["dynamic_dim"],
                         c["hidden_dim"])


def count_parameters(method: str, width: float = 1.0, flax_biases: bool = False,
                     **sizes) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted).
    `flax_biases`: leave out the recurrent cells' second bias b_hh, which Flax's cells fold
    into one, so the count is comparable to our Flax model's."""
    model = build_model(method, width, **sizes)
    return sum(p.numel() for name, p in model.named_parameters()
               if not (flax_biases and "bias_hh" in name))


def synthetic_inputs(method: str, batch: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    """A fixed batch of smooth 64x64 frames in [0, 255/256], (B, T, 3, 64, 64); for cdsvae also
    a content view (time reversed) and a motion view (brightness jitter and noise)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * frames, 3, 8, 8, generator=gen)
    x = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)
    x = (x * (255.0 / 256.0)).view(batch, frames, 3, 64, 64).contiguous()
    inputs = {"video": x}
    if method == "cdsvae":
        jitter = 0.8 + 0.4 * torch.rand(batch, 1, 3, 1, 1, generator=gen)
        noise = 0.05 * torch.randn(x.shape, generator=gen)
        inputs["content"] = x.flip(1).contiguous()
        inputs["motion"] = (x * jitter + noise).clamp(0.0, 1.0)
    return inputs


def make_step(method: str, batch: int, frames: int = 8, width: float = 1.0, bf16: bool = False,
              seed: int = 0, **sizes) -> Callable[[], float]:
    """A zero-argument function running one training step on a fixed synthetic batch (forward,
    backward, Adam step, zero_grad) and returning the loss. `bf16`: the forward pass (and loss)
    under torch.autocast("cpu", bfloat16), parameters and Adam in float32."""
    c = settings(method, **sizes)
    torch.manual_seed(seed)
    model = build_model(method, width, **sizes).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=c["learning_rate"])
    inputs = synthetic_inputs(method, batch, frames, seed + 1)
    loss_fn = LOSSES[method]

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, inputs, c)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


# --- CLI ---------------------------------------------------------------------------------------


def check(steps: int = 30) -> None:
    """Each method at width 0.125, batch 4: `steps` steps on one fixed batch lower the loss."""
    for method in SETTINGS:
        step = make_step(method, batch=4, width=0.125)
        losses = [step() for _ in range(steps)]
        print(json.dumps(dict(check=method, first_loss=round(losses[0], 3),
                              last_loss=round(losses[-1], 3))))
        assert all(math.isfinite(v) for v in losses), f"{method}: non-finite loss"
        assert losses[-1] < losses[0], f"{method}: loss did not decrease ({losses})"
    print("check passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=sorted(SETTINGS), default="cdsvae")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=5, help="timed steps, after one warm-up")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--bf16", action="store_true", help="autocast the forward to bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="loss-decrease check, then exit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        check()
        return
    step = make_step(args.method, args.batch, args.frames, args.width, args.bf16, args.seed)
    start = time.perf_counter()
    step()  # warm-up: allocations, oneDNN primitive creation
    warmup = time.perf_counter() - start
    times = []
    for i in range(args.steps):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
        print(json.dumps(dict(step=i, step_s=round(times[-1], 4), loss=round(loss, 3))))
    print(json.dumps(dict(
        framework="torch", method=args.method, batch=args.batch, frames=args.frames,
        width=args.width, bf16=args.bf16, threads=args.threads,
        params=count_parameters(args.method, args.width),
        warmup_step_s=round(warmup, 3), step_s_median=round(statistics.median(times), 4),
        step_s_all=[round(t, 4) for t in times], torch=torch.__version__)))


if __name__ == "__main__":
    main()
