"""The plugin system: discovery through entry points, third-party plugins installed the real way
(a ``.dist-info`` on ``sys.path``), broken and clashing plugins, disabling, and programmatic
registration.

Every test that installs plugins goes through the ``plugins`` fixture, which undoes ``sys.path``,
the environment, imported plugin modules and the plugin manager afterwards, so the rest of the
suite sees the normal set of plugins.
"""

from __future__ import annotations

import importlib.metadata
import math
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import sdeflow
from sdeflow.errors import OptionError, PluginConflictError, PluginError, UnknownComponentError
from sdeflow.plugins import manager as plugin_manager

BUILTINS = {"process": {"vp", "subvp", "ve"}, "model": {"mlp"}, "sampler": {"sde", "ode"}}
BUILTIN_PLUGINS = {"vp", "subvp", "ve", "mlp", "sde", "ode"}


# ---------------------------------------------------------------------------- installing plugins
class PluginSandbox:
    """Installs distributions into a temporary ``sys.path`` entry, as pip would lay them out."""

    def __init__(self, root: Path, mp: pytest.MonkeyPatch) -> None:
        self.root, self.mp = root, mp
        self._on_path = False

    def install(self, dist: str, entry_points: dict[str, str], modules: dict[str, str],
                version: str = "0.1", where: Path | None = None) -> Path:
        """Write ``modules`` (relative path -> source) and ``<dist>-<version>.dist-info`` with
        ``METADATA`` and an ``entry_points.txt`` naming ``entry_points`` in the ``sdeflow`` group."""
        root = where or self.root
        for rel, src in modules.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(src))
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[sdeflow]\n{lines}")
        return info

    def setenv(self, name: str, value: str) -> None:
        self.mp.setenv(name, value)

    def activate(self, *extra: Path) -> plugin_manager.PluginManager:
        """Put the sandbox on ``sys.path`` and rediscover plugins (``sdeflow.reload_plugins``)."""
        if not self._on_path:
            for p in (*extra, self.root):
                self.mp.syspath_prepend(str(p))
            self._on_path = True
        return sdeflow.reload_plugins()


def _purge_modules(root: Path) -> None:
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if file and Path(file).resolve().is_relative_to(root.resolve()):
            del sys.modules[name]


@pytest.fixture
def plugins(tmp_path: Path):
    """A plugin sandbox; afterwards everything is as before and the normal plugins are reloaded."""
    baseline = sdeflow.list_plugins()
    direct = list(plugin_manager._direct)
    mp = pytest.MonkeyPatch()
    mp.delenv(plugin_manager.STRICT_ENV, raising=False)
    mp.delenv(plugin_manager.DISABLE_ENV, raising=False)
    try:
        yield PluginSandbox(tmp_path, mp)
    finally:
        mp.undo()
        plugin_manager._direct[:] = direct
        _purge_modules(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # test_list_plugins checks that the normal set loads cleanly
            sdeflow.reload_plugins()
        assert sdeflow.list_plugins() == baseline


# ---------------------------------------------------------------------------- plugin sources
OU_PLUGIN = '''
    """A third party's Ornstein-Uhlenbeck process: it defines only drift, diffusion and marginal."""
    import math

    import torch

    import sdeflow


    class OUProcess(sdeflow.ForwardProcess):
        """dx = -theta x dt + sqrt(2 theta) sigma dw. Solving the linear SDE,
        x_t = e^{-theta t} x_0 + int_0^t e^{-theta (t - u)} sqrt(2 theta) sigma dw_u, so
        alpha_t = e^{-theta t} and sigma_t^2 = 2 theta sigma^2 int_0^t e^{-2 theta (t - u)} du
        = sigma^2 (1 - e^{-2 theta t})."""

        t_min = 1e-5

        def __init__(self, theta: float = 8.0, sigma: float = 1.0) -> None:
            super().__init__()
            self.theta, self.sigma = float(theta), float(sigma)

        def drift(self, x, t):
            return -self.theta * x

        def diffusion(self, t):
            return torch.full_like(t, math.sqrt(2.0 * self.theta) * self.sigma)

        def marginal(self, t):
            return torch.exp(-self.theta * t), self.sigma * torch.sqrt(-torch.expm1(-2.0 * self.theta * t))


    @sdeflow.hookimpl
    def sdeflow_register_processes(registry):
        registry.add("my-ou", OUProcess)
'''

EXTRAS_PLUGIN = '''
    """A third party's network and sampler."""
    import torch
    from torch import nn

    import sdeflow


    class TinyNet(nn.Module):
        """net(x, t_cond): one linear layer on [x, t]."""

        def __init__(self, dim: int, scale: float = 1.0) -> None:
            super().__init__()
            self.lin = nn.Linear(dim + 1, dim)
            self.scale = scale

        def forward(self, x, t_cond):
            return self.scale * self.lin(torch.cat([x, t_cond[:, None].to(x.dtype)], dim=1))


    class StochasticHeun(sdeflow.Sampler):
        """A hand-written stochastic Heun loop on the core's reverse SDE (weak order 2 for its
        additive noise): predictor x* = x + h F(x, t) + g(t) dW, corrector
        x' = x + h/2 (F(x, t) + F(x*, t - h)) + (g(t) + g(t - h))/2 dW, F = -(reverse drift)."""

        name = "my-heun"
        stochastic = True

        def __init__(self, steps: int = 100) -> None:
            if steps < 1:
                raise ValueError("steps must be positive")
            self.steps = steps

        def _sample(self, score_model, shape, generator, callback, progress, return_trajectory):
            process = score_model.process
            nfe = [0]

            def score(x, t):
                nfe[0] += 1
                return score_model.score(x, t, check=False)

            rsde = process.reverse_sde(score)
            dtype, n = score_model.dtype, shape[0]
            t0, t1 = float(process.t_max), float(process.t_min)
            h = (t0 - t1) / self.steps
            x = score_model.prior_sample(shape, generator, dtype=dtype)
            t = torch.full((n,), t0, dtype=dtype)
            for k in range(self.steps):
                t_next = torch.full((n,), t0 - (k + 1) * h if k + 1 < self.steps else t1, dtype=dtype)
                dw = (h ** 0.5) * torch.randn(shape, generator=generator, dtype=dtype)
                g0 = sdeflow.append_dims(rsde.diffusion(t), x.ndim)
                g1 = sdeflow.append_dims(rsde.diffusion(t_next), x.ndim)
                f0 = -rsde.drift(x, t)
                pred = x + h * f0 + g0 * dw
                x = x + 0.5 * h * (f0 - rsde.drift(pred, t_next)) + 0.5 * (g0 + g1) * dw
                t = t_next
            return sdeflow.SampleResult(samples=x, nfe=nfe[0], steps=self.steps)


    @sdeflow.hookimpl
    def sdeflow_register_models(registry):
        registry.add("my-net", TinyNet)


    @sdeflow.hookimpl
    def sdeflow_register_samplers(registry):
        registry.add("my-heun", StochasticHeun)
'''


def install_ou(sb: PluginSandbox, **kw) -> Path:
    return sb.install("my-ou-plugin", {"my-ou": "my_ou_plugin"}, {"my_ou_plugin/__init__.py": OU_PLUGIN}, **kw)


def install_extras(sb: PluginSandbox) -> Path:
    return sb.install("my-extras", {"extras": "my_extras.plugin"},
                      {"my_extras/__init__.py": "", "my_extras/plugin.py": EXTRAS_PLUGIN}, version="2.3.1")


def simple_plugin(kind_hook: str, name: str, *, before: str = "", after: str = "", decorate: bool = True) -> str:
    """Source of a plugin module registering a VP process / MLP / SDE sampler under ``name``."""
    factory = {"sdeflow_register_processes": "VPProcess", "sdeflow_register_models": "TimeMLP",
               "sdeflow_register_samplers": "SDESampler"}.get(kind_hook, "VPProcess")
    return f'''
import sdeflow
from sdeflow_plugins.vp import VPProcess
from sdeflow_plugins.mlp import TimeMLP
from sdeflow_plugins.sde import SDESampler
{before}
{"@sdeflow.hookimpl" if decorate else ""}
def {kind_hook}(registry):
    registry.add({name!r}, {factory})
{after}
'''


def gaussian_1d(mean: float = 5.0, std: float = 2.0) -> sdeflow.GaussianMixture:
    return sdeflow.GaussianMixture([1.0], [[mean]], [[[std * std]]], dtype=torch.float64)


def assert_normal(x: torch.Tensor, mean: float, std: float, k: float = 4.0) -> None:
    """Sample mean and std of ``x`` within ``k`` standard errors: ``std/sqrt(n)`` for the mean and
    ``std/sqrt(2n)`` for the standard deviation (normal data)."""
    n = x.shape[0]
    assert torch.isfinite(x).all()
    se_mean, se_std = std / math.sqrt(n), std / math.sqrt(2 * n)
    m, s = float(x.mean()), float(x.std())
    assert abs(m - mean) < k * se_mean, f"mean {m:.4f}, expected {mean} +- {k * se_mean:.4f}"
    assert abs(s - std) < k * se_std, f"std {s:.4f}, expected {std} +- {k * se_std:.4f}"


# ---------------------------------------------------------------------------- built-ins
def test_list_plugins_has_the_builtins_found_through_entry_points():
    found = sdeflow.list_plugins()
    assert set(found) == {"process", "model", "sampler"}
    for kind, names in BUILTINS.items():
        assert names <= set(found[kind]), (kind, found[kind])
        assert found[kind] == sorted(found[kind])
    mgr = plugin_manager.get_manager()
    version = importlib.metadata.version("sdeflow")
    for name in BUILTIN_PLUGINS:
        info = mgr.plugins[name]
        assert info.ok and info.error is None and not info.disabled
        assert info.distribution == "sdeflow" and info.version == version
        assert info.target == f"sdeflow_plugins.{name}"  # an entry point, not an import by the core
        assert name in info.components["process"] + info.components["model"] + info.components["sampler"]
    assert {k: v for k, v in mgr.plugins["vp"].components.items() if v} == {"process": ["vp"]}


# ---------------------------------------------------------------------------- third-party plugins
def test_third_party_process_samples_correctly_with_sde_and_ode(plugins):
    install_ou(plugins)
    mgr = plugins.activate()
    info = mgr.plugins["my-ou"]
    assert (info.distribution, info.version, info.error) == ("my-ou-plugin", "0.1", None)
    assert info.components["process"] == ["my-ou"]
    assert "my-ou" in sdeflow.list_plugins()["process"]

    process = sdeflow.create_process("my-ou", theta=8.0, sigma=1.0)
    assert isinstance(process, sdeflow.ForwardProcess)
    # the base class derives the prior from the marginal: N(0, sigma^2 (1 - e^{-2 theta}))
    assert float(process.prior_std(dtype=torch.float64)) == pytest.approx(math.sqrt(-math.expm1(-16.0)), rel=1e-12)
    with pytest.raises(OptionError, match=r"(?s)unknown option.*beta.*valid options: theta=8\.0, sigma=1\.0"):
        sdeflow.create_process("my-ou", beta=1.0)

    # exact score of N(5, 2^2) under the plugin's process, started from the process's own prior
    # (p_1 has mean 5 e^{-8} = 0.0017 and variance 1 - 1e-7: the prior's bias is negligible)
    sm = gaussian_1d().score_model(process, exact_prior=False)
    n = 10_000
    # Heun (weak order 2 on the reverse SDE's additive noise) with 100 steps is 5x cheaper than
    # Euler with 1000 and more accurate: the exact mean/variance recursion of either scheme on this
    # linear problem gives a bias of 0.003 (Heun, 100 steps) against 0.018 (Euler, 1000 steps)
    # in the mean, well under the 4 standard errors (0.08) allowed below.
    sde = sdeflow.create_sampler("sde", method="heun", steps=100)
    res = sde.sample(sm, (n, 1), generator=torch.Generator().manual_seed(0))
    assert res.samples.shape == (n, 1) and res.samples.dtype == torch.float64
    assert res.nfe == 2 * 100 + 1  # two evaluations per Heun step + the final denoising step
    assert_normal(res.samples[:, 0], 5.0, 2.0)

    ode = sdeflow.create_sampler("ode", method="dopri5")
    res = ode.sample(sm, (n, 1), generator=torch.Generator().manual_seed(1))
    assert res.nfe > 0 and res.samples.shape == (n, 1)
    assert_normal(res.samples[:, 0], 5.0, 2.0)


def test_third_party_model_and_sampler(plugins):
    install_ou(plugins)
    install_extras(plugins)
    mgr = plugins.activate()
    info = mgr.plugins["extras"]
    assert (info.distribution, info.version, info.target) == ("my-extras", "2.3.1", "my_extras.plugin")
    assert {k: v for k, v in info.components.items() if v} == {"model": ["my-net"], "sampler": ["my-heun"]}

    net = sdeflow.create_model("my-net", dim=3)
    sm = sdeflow.ScoreModel(net, sdeflow.create_process("vp"), parametrization="eps")
    x = torch.randn(4, 3)
    assert sm.score(x, torch.full((4,), 0.5)).shape == (4, 3)
    with pytest.raises(OptionError, match=r"(?s)width.*valid options: dim, scale=1\.0"):
        sdeflow.create_model("my-net", dim=3, width=8)
    with pytest.raises(OptionError, match="needs option.*dim"):
        sdeflow.create_model("my-net")
    # a built-in sampler runs the third-party network
    out = sdeflow.create_sampler("sde", steps=4).sample(sm, (5, 3), generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (5, 3) and torch.isfinite(out.samples).all()

    # the third-party sampler runs the third-party process with the exact score (100 Heun steps:
    # its weak error on this problem is 0.003 in the mean, computed from the linear recursion)
    sampler = sdeflow.create_sampler("my-heun", steps=100)
    assert isinstance(sampler, sdeflow.Sampler)
    sm = gaussian_1d().score_model(sdeflow.create_process("my-ou"), exact_prior=False)
    res = sampler.sample(sm, (10_000, 1), generator=torch.Generator().manual_seed(2))
    assert res.nfe == 200
    assert_normal(res.samples[:, 0], 5.0, 2.0)


def test_same_distribution_twice_on_sys_path_loads_once(plugins, tmp_path):
    other = tmp_path / "copy"
    install_ou(plugins)
    install_ou(plugins, where=other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mgr = plugins.activate(other)
    assert mgr.plugins["my-ou"].ok
    assert [n for n in mgr.plugins if n.startswith("my-ou")] == ["my-ou"]


def test_two_distributions_declaring_one_entry_point_name(plugins):
    install_ou(plugins)
    plugins.install("impostor", {"my-ou": "impostor_plugin"},
                    {"impostor_plugin.py": simple_plugin("sdeflow_register_processes", "impostor-vp")})
    with pytest.warns(RuntimeWarning, match=r"(?s)'my-ou'.*'my-ou-plugin'.*'impostor'"):
        mgr = plugins.activate()
    assert mgr.plugins["my-ou"].ok  # the first on sys.path is kept, the other reported
    bad = [i for i in mgr.plugins.values() if i.distribution == "impostor"]
    assert len(bad) == 1 and "my-ou-plugin" in bad[0].error and "impostor" in bad[0].error
    assert "impostor-vp" not in sdeflow.list_plugins()["process"]


# ---------------------------------------------------------------------------- broken plugins
BROKEN_IMPORT = '''
    import sdeflow
    import foolib_that_is_not_installed  # noqa: F401

    @sdeflow.hookimpl
    def sdeflow_register_processes(registry):
        raise AssertionError("never reached")
'''


def test_plugin_that_fails_to_import_is_reported_and_the_rest_load(plugins):
    install_ou(plugins)
    plugins.install("broken-dist", {"broken": "broken_plugin"}, {"broken_plugin.py": BROKEN_IMPORT})
    with pytest.warns(RuntimeWarning, match=r"plugin 'broken'.*foolib_that_is_not_installed") as rec:
        mgr = plugins.activate()
    assert any("SDEFLOW_STRICT_PLUGINS" in str(w.message) for w in rec)
    info = mgr.plugins["broken"]
    assert not info.ok and "ModuleNotFoundError" in info.error and "foolib_that_is_not_installed" in info.error
    assert info.distribution == "broken-dist"
    found = sdeflow.list_plugins()
    assert "my-ou" in found["process"]
    for kind, names in BUILTINS.items():
        assert names <= set(found[kind])

    plugins.setenv("SDEFLOW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'broken'.*foolib_that_is_not_installed"):
        sdeflow.reload_plugins()


HOOK_RAISES = '''
    import sdeflow
    from sdeflow_plugins.mlp import TimeMLP
    from sdeflow_plugins.vp import VPProcess

    @sdeflow.hookimpl
    def sdeflow_register_processes(registry):
        registry.add("half-process", VPProcess)

    @sdeflow.hookimpl
    def sdeflow_register_models(registry):
        registry.add("half-model", TimeMLP)
        registry.add("half-model-2", TimeMLP)
        raise KeyError("config file missing")
'''


def test_plugin_whose_hook_raises_leaves_nothing_registered(plugins):
    plugins.install("halfway", {"halfway": "halfway_plugin"}, {"halfway_plugin.py": HOOK_RAISES})
    with pytest.warns(RuntimeWarning, match=r"plugin 'halfway'.*hook raised KeyError.*config file missing"):
        mgr = plugins.activate()
    info = mgr.plugins["halfway"]
    assert "KeyError" in info.error
    assert not any(info.components.values())
    found = sdeflow.list_plugins()
    for name in ("half-process", "half-model", "half-model-2"):
        assert name not in found["process"] + found["model"]
    with pytest.raises(UnknownComponentError):
        sdeflow.create_process("half-process")
    assert plugin_manager.get_manager().pm.get_plugin("halfway") is None

    plugins.setenv("SDEFLOW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="halfway.*KeyError"):
        sdeflow.reload_plugins()


def test_misspelled_unmarked_and_empty_plugins_are_reported(plugins):
    plugins.install("typo", {"typo": "typo_plugin"},
                    {"typo_plugin.py": simple_plugin("sdeflow_register_process", "typo-vp")})
    plugins.install("typo-undecorated", {"typo2": "typo2_plugin"},
                    {"typo2_plugin.py": simple_plugin("sdeflow_register_sampler", "typo-sde", decorate=False)})
    plugins.install("undecorated", {"undecorated": "undecorated_plugin"},
                    {"undecorated_plugin.py": simple_plugin("sdeflow_register_models", "plain-mlp", decorate=False)})
    plugins.install("empty", {"empty": "empty_plugin"}, {"empty_plugin.py": "import sdeflow\nX = 1\n"})
    plugins.install("badargs", {"badargs": "badargs_plugin"}, {"badargs_plugin.py": '''
        import sdeflow
        @sdeflow.hookimpl
        def sdeflow_register_models(reg):
            pass
    '''})
    with pytest.warns(RuntimeWarning) as rec:
        mgr = plugins.activate()
    messages = "\n".join(str(w.message) for w in rec)
    assert "plugin 'typo'" in messages
    err = mgr.plugins["typo"].error
    assert "unknown hook 'sdeflow_register_process'" in err
    assert "did you mean 'sdeflow_register_processes'" in err
    assert "did you mean 'sdeflow_register_samplers'" in mgr.plugins["typo2"].error
    assert "no sdeflow hook implementation" in mgr.plugins["empty"].error
    assert "'reg'" in mgr.plugins["badargs"].error and "registry" in mgr.plugins["badargs"].error
    found = sdeflow.list_plugins()
    assert "typo-vp" not in found["process"] and "typo-sde" not in found["sampler"]
    # a correctly named hook without the marker still counts (pytest does the same)
    assert mgr.plugins["undecorated"].ok and "plain-mlp" in found["model"]

    plugins.setenv("SDEFLOW_STRICT_PLUGINS", "1")
    plugins.setenv("SDEFLOW_DISABLE_PLUGINS", "typo2,empty,badargs")
    with pytest.raises(PluginError, match="unknown hook 'sdeflow_register_process'"):
        sdeflow.reload_plugins()


def test_plugin_using_the_registry_while_loading_is_reported_not_deadlocked(plugins):
    plugins.install("eager", {"eager": "eager_plugin"}, {"eager_plugin.py": '''
        import sdeflow
        NAMES = sdeflow.list_plugins()   # at import time: plugins are still loading

        @sdeflow.hookimpl
        def sdeflow_register_models(registry):
            pass
    '''})
    plugins.install("eager-hook", {"eager-hook": "eager_hook_plugin"}, {"eager_hook_plugin.py": '''
        import sdeflow
        @sdeflow.hookimpl
        def sdeflow_register_processes(registry):
            registry.add("wrapped-vp", sdeflow.create_process("vp").__class__)
    '''})
    with pytest.warns(RuntimeWarning, match="still loading"):
        mgr = plugins.activate()
    assert "still loading" in mgr.plugins["eager"].error
    assert "still loading" in mgr.plugins["eager-hook"].error
    assert "wrapped-vp" not in sdeflow.list_plugins()["process"]


# ---------------------------------------------------------------------------- clashes, disabling
def dup_plugin(name: str) -> str:
    return simple_plugin("sdeflow_register_processes", "dup-process", after=f'''
@sdeflow.hookimpl
def sdeflow_register_models(registry):
    registry.add({name + "-mlp"!r}, TimeMLP)
''')


def test_two_plugins_registering_one_name(plugins):
    plugins.install("dup-a", {"dup-a": "dup_a"}, {"dup_a.py": dup_plugin("a")})
    plugins.install("dup-b", {"dup-b": "dup_b"}, {"dup_b.py": dup_plugin("b")})
    with pytest.warns(RuntimeWarning, match=r"'dup-process'.*'dup-a'.*'dup-b'"):
        mgr = plugins.activate()
    assert "dup-process" in sdeflow.list_plugins()["process"]
    with pytest.raises(PluginConflictError, match=r"'dup-process'.*'dup-a' and 'dup-b'.*SDEFLOW_DISABLE_PLUGINS"):
        sdeflow.create_process("dup-process")
    assert mgr.conflicts == {("process", "dup-process"): ["dup-a", "dup-b"]}
    assert any("dup-a" in c for c in mgr.plugins["dup-b"].conflicts)
    assert any("dup-b" in c for c in mgr.plugins["dup-a"].conflicts)
    # the plugins' other components are unaffected
    assert sdeflow.create_model("a-mlp", dim=2) is not None and sdeflow.create_model("b-mlp", dim=2) is not None

    plugins.setenv("SDEFLOW_STRICT_PLUGINS", "1")
    with pytest.raises(PluginConflictError, match=r"'dup-process'.*'dup-a'.*'dup-b'"):
        sdeflow.reload_plugins()

    # disabling one of them resolves the clash
    plugins.setenv("SDEFLOW_DISABLE_PLUGINS", "dup-a")
    mgr = sdeflow.reload_plugins()
    assert mgr.conflicts == {}
    assert isinstance(sdeflow.create_process("dup-process"), sdeflow.ForwardProcess)
    assert mgr.plugins["dup-b"].components["process"] == ["dup-process"]


def test_third_party_plugin_clashing_with_a_builtin(plugins):
    plugins.install("vp-clone", {"vp-clone": "vp_clone"},
                    {"vp_clone.py": simple_plugin("sdeflow_register_processes", "vp")})
    with pytest.warns(RuntimeWarning, match=r"'vp'.*'vp-clone'"):
        plugins.activate()
    with pytest.raises(PluginConflictError, match=r"'vp' and 'vp-clone'"):
        sdeflow.create_process("vp")


def test_disable_plugins_by_entry_point_name(plugins):
    install_ou(plugins)
    plugins.setenv("SDEFLOW_DISABLE_PLUGINS", " ve , my-ou,sde ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mgr = plugins.activate()
    found = sdeflow.list_plugins()
    assert "ve" not in found["process"] and "my-ou" not in found["process"] and "sde" not in found["sampler"]
    assert {"vp", "subvp"} <= set(found["process"]) and "ode" in found["sampler"]
    for name in ("ve", "my-ou", "sde"):
        assert mgr.plugins[name].disabled and not mgr.plugins[name].ok
    with pytest.raises(UnknownComponentError, match=r"unknown process 've'.*'subvp'.*'vp'"):
        sdeflow.create_process("ve")

    plugins.setenv("SDEFLOW_DISABLE_PLUGINS", "ve,no-such-plugin")
    with pytest.warns(RuntimeWarning, match=r"no-such-plugin.*installed plugins:.*mlp"):
        mgr = sdeflow.reload_plugins()
    assert any("no-such-plugin" in n for n in mgr.notes)


# ---------------------------------------------------------------------------- unknown names
@pytest.mark.parametrize("kind,create", [
    ("process", sdeflow.create_process),
    ("model", sdeflow.create_model),
    ("sampler", sdeflow.create_sampler),
])
def test_unknown_names_list_the_valid_ones(kind, create):
    with pytest.raises(UnknownComponentError) as exc:
        create("no-such-thing")
    valid = sdeflow.list_plugins()[kind]
    assert exc.value.valid == valid and exc.value.name == "no-such-thing"
    msg = str(exc.value)
    assert f"unknown {kind} 'no-such-thing'" in msg
    for name in valid:
        assert repr(name) in msg
    assert isinstance(exc.value, ValueError)


# ---------------------------------------------------------------------------- programmatic plugins
class MyPlugin:
    """A plugin object (not installed) with hook methods."""

    @sdeflow.hookimpl
    def sdeflow_register_processes(self, registry):
        from sdeflow_plugins.vp import VPProcess

        registry.add("prog-vp", VPProcess)


class ClashingPlugin:
    @sdeflow.hookimpl
    def sdeflow_register_processes(self, registry):
        from sdeflow_plugins.vp import VPProcess

        registry.add("prog-ok", VPProcess)
        registry.add("ve", VPProcess)


class RaisingPlugin:
    @sdeflow.hookimpl
    def sdeflow_register_processes(self, registry):
        from sdeflow_plugins.vp import VPProcess

        registry.add("prog-raises", VPProcess)
        raise RuntimeError("no GPU here")


def test_register_and_unregister_plugin(plugins):
    info = sdeflow.register_plugin(MyPlugin(), name="mine")
    assert info.ok and info.components["process"] == ["prog-vp"] and info.distribution is None
    assert "prog-vp" in sdeflow.list_plugins()["process"]
    assert isinstance(sdeflow.create_process("prog-vp", beta_max=10.0), sdeflow.ForwardProcess)
    with pytest.raises(PluginError, match="'mine' is already registered"):
        sdeflow.register_plugin(MyPlugin(), name="mine")
    # survives a reload
    sdeflow.reload_plugins()
    assert "prog-vp" in sdeflow.list_plugins()["process"]

    sdeflow.unregister_plugin("mine")
    assert "prog-vp" not in sdeflow.list_plugins()["process"]
    assert "mine" not in plugin_manager.get_manager().plugins
    with pytest.raises(PluginError, match=r"no plugin named 'mine'.*SDEFLOW_DISABLE_PLUGINS"):
        sdeflow.unregister_plugin("mine")


def test_register_plugin_errors_leave_nothing_behind(plugins):
    before, direct = sdeflow.list_plugins(), list(plugin_manager._direct)
    with pytest.raises(PluginConflictError, match=r"'ve'.*'ve'.*'clash'"):
        sdeflow.register_plugin(ClashingPlugin(), name="clash")
    with pytest.raises(PluginError, match="RuntimeError: no GPU here"):
        sdeflow.register_plugin(RaisingPlugin(), name="raises")
    with pytest.raises(PluginError, match="no sdeflow hook"):
        sdeflow.register_plugin(object(), name="nothing")
    assert sdeflow.list_plugins() == before
    mgr = plugin_manager.get_manager()
    assert not {"clash", "raises", "nothing"} & set(mgr.plugins) and mgr.conflicts == {}
    assert isinstance(sdeflow.create_process("ve"), sdeflow.ForwardProcess)
    assert plugin_manager._direct == direct
