"""`offdiff data collect`: D4RL-style local datasets from a compact SAC, written as real Minari datasets."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import minari
import numpy as np
import pytest
import torch

from offdiff.cli import main
from offdiff.collect import KINDS, SAC, CollectRequest, SACConfig, collect, mkl_branch, parse_kinds
from offdiff.collect import collection as collect_module
from offdiff.collect.adam import IEEESqrtAdam, ieee_sqrt
from offdiff.collect.envs import env_info
from offdiff.collect.episodes import Episodes
from offdiff.collect.rollout import evaluate_returns, uniform_policy
from offdiff.collect.sac import sample_with_log_prob
from offdiff.collect.train import SACRun, pick_medium, snapshot_steps
from offdiff.data import sources
from offdiff.errors import OffdiffError
from offdiff.nets import TanhGaussian

IDP = "InvertedDoublePendulum-v5"
BUDGET = 800
TINY_SAC = SACConfig(hidden=32, batch_size=64, lr=1e-3, learning_starts=100, snapshots=4, eval_episodes=5,
                     checkpoint_every=100)
CPU = torch.device("cpu")


def _request(**fields) -> CollectRequest:
    return CollectRequest(IDP, **{"budget": BUDGET, "episodes": 4, "sac": TINY_SAC, **fields})


def _ids(env_slug: str = "inverteddoublependulum") -> dict[str, str]:
    return {kind: f"local/{env_slug}/{kind}-v0" for kind in KINDS}


def _read(store: Path, dataset_id: str) -> tuple[dict, list[dict[str, np.ndarray]]]:
    """Metadata and episodes of a dataset in `store`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        ds = minari.load_dataset(dataset_id)
        fields = ("observations", "actions", "rewards", "terminations", "truncations")
        return ds.storage.metadata, [{f: np.asarray(getattr(ep, f)) for f in fields} for ep in ds.iterate_episodes()]


def _assert_same_datasets(store_a: Path, store_b: Path, ids: list[str]) -> None:
    for dataset_id in ids:
        (_, a), (_, b) = _read(store_a, dataset_id), _read(store_b, dataset_id)
        assert len(a) == len(b), dataset_id
        for ep_a, ep_b in zip(a, b, strict=True):
            for field in ep_a:
                np.testing.assert_array_equal(ep_a[field], ep_b[field], err_msg=f"{dataset_id} {field}")


@pytest.fixture(scope="module")
def idp_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Minari store with all five kinds for InvertedDoublePendulum-v5, seed 0 (collected once per module)."""
    store = tmp_path_factory.mktemp("collect_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(store))
        mp.setenv("OFFDIFF_CACHE", str(tmp_path_factory.mktemp("collect_cache")))
        results = collect(_request(), progress=False)
    assert [(r.dataset_id, r.status) for r in results] == [(i, "written") for i in _ids().values()]
    return store


def test_every_kind_is_a_minari_dataset_that_offdiff_loads(idp_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(idp_store))
    ids = _ids()
    meta = {kind: _read(idp_store, i)[0] for kind, i in ids.items()}
    prov = meta["medium"]["offdiff_collect"]
    steps = [s for s, _ in prov["snapshots"]]
    assert steps == snapshot_steps(BUDGET, TINY_SAC.snapshots) == [200, 400, 600, 800]
    assert prov["expert_return"] == prov["snapshots"][-1][1] > prov["random_return"]
    assert prov["medium_step"] == steps[pick_medium([r for _, r in prov["snapshots"]], prov["random_return"])]
    data = {}
    for kind, dataset_id in ids.items():
        source = sources.resolve(f"minari:{dataset_id}")
        info = source.info()
        t = data[kind] = source.load()
        n = len(t)
        assert (info.obs_dim, info.act_dim, info.eval_env, info.num_transitions) == (9, 1, IDP, n)
        assert t.observations.shape == t.next_observations.shape == (n, 9) and t.actions.shape == (n, 1)
        assert not (t.terminals & t.timeouts).any()
        ends = np.flatnonzero(t.terminals | t.timeouts)
        assert ends[-1] == n - 1 and len(ends) == info.num_episodes
        # Reference scores: not in D4RL's table, so the random policy's and the expert's mean returns, from metadata.
        ref = source.ref_scores()
        assert (ref.min, ref.max) == (prov["random_return"], prov["expert_return"])
        assert (meta[kind]["ref_min_score"], meta[kind]["ref_max_score"]) == (ref.min, ref.max)
        assert "metadata" in ref.source
    assert {r["id"]: r["ref_scores"] is not None for r in sources.list_local()} == dict.fromkeys(ids.values(), True)
    assert [len(_read(idp_store, ids[k])[1]) for k in ("random", "medium", "expert", "medium-expert")] == [4, 4, 4, 8]
    # The random pendulum falls: true terminations, not timeouts.
    assert data["random"].terminals.sum() == 4 and not data["random"].timeouts.any()
    # medium-replay is SAC's buffer up to the medium snapshot; its unfinished last episode is cut (a timeout).
    replay = data["medium-replay"]
    assert len(replay) == prov["medium_step"] and replay.timeouts[-1] and not replay.terminals[-1]
    # medium-expert is exactly medium followed by expert.
    for field in ("observations", "actions", "rewards", "terminals", "timeouts"):
        joined = np.concatenate([getattr(data["medium"], field), getattr(data["expert"], field)])
        np.testing.assert_array_equal(getattr(data["medium-expert"], field), joined)


def test_same_seed_gives_identical_datasets(idp_store: Path) -> None:
    results = collect(_request(), progress=False)
    assert {r.status for r in results} == {"written"}
    _assert_same_datasets(Path(os.environ["MINARI_DATASETS_PATH"]), idp_store, list(_ids().values()))


def test_resume_after_interruptions_gives_the_uninterrupted_result(
    idp_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    update = SAC.update

    def interrupted_update(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 550:
            raise KeyboardInterrupt
        return update(self, *args, **kwargs)

    monkeypatch.setattr(SAC, "update", interrupted_update)
    with pytest.raises(KeyboardInterrupt):
        collect(_request(), progress=False)
    assert not sources.list_local()  # nothing half-written

    write = collect_module.write_dataset
    written = []

    def interrupted_write(dataset_id, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(dataset_id)
        return write(dataset_id, *args, **kwargs)

    calls["n"] = 0
    monkeypatch.setattr(collect_module, "write_dataset", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        collect(_request(), progress=False)
    assert 0 < calls["n"] < 400  # continued from a checkpoint (from scratch would be 700 updates)
    assert [r["id"] for r in sources.list_local()] == sorted(written)

    monkeypatch.setattr(collect_module, "write_dataset", write)
    calls["n"] = 0
    statuses = {r.dataset_id: r.status for r in collect(_request(), progress=False)}
    assert calls["n"] == 0  # SAC finished: no more training
    assert statuses == {i: "skipped" if i in written else "written" for i in _ids().values()}
    _assert_same_datasets(Path(os.environ["MINARI_DATASETS_PATH"]), idp_store, list(_ids().values()))


def test_reference_scores_are_its_own_random_and_expert_and_size_cuts_at_transitions() -> None:
    results = collect(_request(kinds=("random",), episodes=None, transitions=150), progress=False)
    dataset = _ids()["random"]
    assert [(r.dataset_id, r.status) for r in results] == [(dataset, "written")]
    source = sources.resolve(f"minari:{dataset}")
    t = source.load()
    assert len(t) == 150 and t.observations.shape == (150, 9) and t.actions.shape == (150, 1)
    assert t.terminals.sum() >= 3 and t.timeouts.sum() == 1 and t.timeouts[-1]  # random IDP falls; cut at 150
    meta = source.info().metadata
    recipe = meta["offdiff_collect"]
    assert recipe["expert_return"] > recipe["random_return"]
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (recipe["random_return"], recipe["expert_return"])
    assert meta["num_episodes_average_score"] == TINY_SAC.eval_episodes
    assert (source.ref_scores().min, source.ref_scores().max) == (recipe["random_return"], recipe["expert_return"])


@pytest.mark.slow
def test_existing_dataset_is_an_error_unless_overwrite(capsys: pytest.CaptureFixture) -> None:
    tiny_sac = [f"--set={k}={v}" for k, v in (("hidden", 32), ("batch_size", 64), ("lr", 1e-3),
                                               ("learning_starts", 100), ("snapshots", 4), ("eval_episodes", 5))]
    args = ["data", "collect", IDP, "--kinds", "random", "--transitions", "40", "--budget", str(BUDGET), *tiny_sac,
            "--quiet"]
    assert main(args) == 0
    assert "written: local/inverteddoublependulum/random-v0" in capsys.readouterr().out
    assert main(args) == 0  # the same collection again: recognised and skipped
    assert "skipped: local/inverteddoublependulum/random-v0" in capsys.readouterr().out
    _, before = _read(Path(os.environ["MINARI_DATASETS_PATH"]), "local/inverteddoublependulum/random-v0")
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("offdiff: error: dataset local/inverteddoublependulum/random-v0 already exists")
    assert "--overwrite" in err
    assert "\n" not in err
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    meta, after = _read(Path(os.environ["MINARI_DATASETS_PATH"]), "local/inverteddoublependulum/random-v0")
    assert meta["offdiff_collect"]["seed"] == 1
    assert not np.array_equal(before[0]["actions"], after[0]["actions"])  # another seed, other data


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["NoSuchEnv-v0"], "unknown env 'NoSuchEnv-v0'"),
        (["CartPole-v1"], "collection needs a bounded 1-D Box"),
        ([IDP, "--kinds", "medium,bogus"], "unknown dataset kind(s) ['bogus']"),
        ([IDP, "--episodes", "0"], "dataset size must be positive"),
        ([IDP, "--budget", "100"], "budget 100 must exceed learning_starts=5000"),
        ([IDP, "--sac", "hiden=3"], "unknown config key(s) ['hiden']"),
        ([IDP, "--sac", "snapshots=1"], "at least 2 snapshots, got snapshots=1"),
        ([IDP, "--namespace", "a b"], "bad namespace 'a b'"),
    ],
)
def test_bad_input_is_a_one_line_error(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "collect", *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not sources.list_local()


def test_the_cli_collects_in_mkls_compatible_branch(tmp_path: Path) -> None:
    """`offdiff data collect` runs MKL's COMPATIBLE branch (the same data on every x86-64 CPU) and records it."""
    if mkl_branch.current() is None:
        pytest.skip("this torch has no MKL (or does not expose it): nothing to pin")
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    env |= {"MINARI_DATASETS_PATH": str(tmp_path / "store"), "OFFDIFF_CACHE": str(tmp_path / "cache")}
    tiny_sac = [f"--set={k}={v}" for k, v in (("hidden", 32), ("batch_size", 64), ("lr", 1e-3),
                                               ("learning_starts", 100), ("snapshots", 4), ("eval_episodes", 5))]
    done = subprocess.run(
        [sys.executable, "-m", "offdiff.cli", "data", "collect", IDP, "--kinds", "random", "--episodes", "2",
         "--budget", str(BUDGET), *tiny_sac, "--quiet"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "note:" not in done.stderr
    meta, _ = _read(tmp_path / "store", "local/inverteddoublependulum/random-v0")
    assert meta["offdiff_collect"]["mkl_branch"] == mkl_branch.COMPATIBLE


def test_a_collection_records_its_mkl_branch_and_says_when_mkl_picks_kernels_by_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mkl_branch, "current", lambda: "OFF")  # MKL choosing its kernels by CPU
    logged: list[str] = []
    collect(_request(kinds=("random",)), progress=False, log=logged.append)
    meta, _ = _read(Path(os.environ["MINARI_DATASETS_PATH"]), "local/inverteddoublependulum/random-v0")
    assert meta["offdiff_collect"]["mkl_branch"] == "OFF"
    notes = [line for line in logged if line.startswith("note:")]
    assert len(notes) == 1 and "MKL's code branch is OFF, not COMPATIBLE" in notes[0]
    # The branch is part of the SAC run's key: a run under another branch is never resumed as this one.
    off = collect_module.Collection(_request(), progress=False, log=lambda _: None).work
    monkeypatch.setattr(mkl_branch, "current", lambda: mkl_branch.COMPATIBLE)
    assert collect_module.Collection(_request(), progress=False, log=lambda _: None).work != off
    assert mkl_branch.portability_note(mkl_branch.COMPATIBLE) is None
    assert "torch here has no MKL" in mkl_branch.portability_note(None)


def test_episodes_and_transitions_are_exclusive() -> None:
    with pytest.raises(OffdiffError, match="give --episodes or --transitions, not both"):
        collect(_request(transitions=10), progress=False)
    assert parse_kinds("expert, random,expert") == ("random", "expert")


def test_pick_medium_rule() -> None:
    # target = 10 + (100 - 10) / 3 = 40; the first snapshot reaching it is 45 (index 2): 45 is closer than 30.
    assert pick_medium([20, 30, 45, 41, 80, 100], random_return=10) == 2
    assert pick_medium([20, 37, 45, 41, 100], random_return=10) == 1  # 37 is closer than 45
    assert pick_medium([20, 35, 45, 100], random_return=10) == 1  # a tie goes to the earlier snapshot
    assert pick_medium([30, 45, 39, 100], random_return=10) == 1  # 39 is closer but comes after 45 reached T
    assert pick_medium([5, 20, 100], random_return=10) == 1  # none reached: the closest of all
    with pytest.raises(OffdiffError, match="at least 2 snapshots"):
        pick_medium([100], random_return=0)
    assert snapshot_steps(10, 4) == [2, 5, 8, 10] and snapshot_steps(3, 5) == [1, 2, 3]


def test_ieee_sqrt_adam_is_adam_with_a_correctly_rounded_square_root() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1 << 14, generator=g) * torch.exp(torch.randn(1 << 14, generator=g) * 5)
    correctly_rounded = torch.from_numpy(np.sqrt(x.double().numpy())).float()  # √ in double, then rounded: exact
    assert torch.equal(ieee_sqrt(x), correctly_rounded)
    assert torch.equal(ieee_sqrt(x[7].clone()), correctly_rounded[7])  # 0-d, as log α is
    # Otherwise torch's Adam: the same trajectory up to the square root's last bit.
    target = torch.randn(64, 8, generator=g)
    params = [torch.zeros(64, 8, requires_grad=True) for _ in range(2)]
    optimizers = [IEEESqrtAdam([params[0]], lr=1e-2), torch.optim.Adam([params[1]], lr=1e-2)]
    for _ in range(200):
        for p, opt in zip(params, optimizers, strict=True):
            opt.zero_grad()
            (p - target).pow(2).sum().backward()
            opt.step()
    torch.testing.assert_close(params[0], params[1], rtol=1e-5, atol=1e-6)
    assert (params[0] - target).pow(2).sum() < 0.1 * target.pow(2).sum()  # and it optimizes


def test_sac_log_prob_has_the_tanh_jacobian() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(256, 3, generator=gen, dtype=torch.float64)
    std = torch.rand(256, 3, generator=gen, dtype=torch.float64) + 0.1
    action, log_prob = sample_with_log_prob(TanhGaussian(mean, std, 1.0), gen)
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, std), [torch.distributions.TanhTransform()]
    )
    torch.testing.assert_close(log_prob, reference.log_prob(action).sum(-1), rtol=1e-6, atol=1e-6)
    without_jacobian = torch.distributions.Normal(mean, std).log_prob(torch.atanh(action)).sum(-1)
    assert (log_prob > without_jacobian + 1e-3).all()  # −log(1 − a²) > 0 is added per dimension


def test_episodes_from_steps_split_and_cut() -> None:
    obs = np.arange(6, dtype=float)[:, None]
    episodes = Episodes.from_steps(
        obs=obs, act=np.zeros((6, 1)), reward=np.ones(6), next_obs=obs + 0.5,
        terminated=np.array([0, 1, 0, 0, 0, 0], bool), truncated=np.array([0, 0, 0, 1, 0, 0], bool),
    )
    assert episodes.lengths.tolist() == [2, 2, 2] and episodes.returns().tolist() == [2, 2, 2]
    assert episodes.truncations.tolist() == [0, 0, 0, 1, 0, 1]  # the open last episode is cut
    first = episodes.buffers()[0]
    assert np.asarray(first.observations)[:, 0].tolist() == [0, 0.5, 1.5]


@pytest.mark.slow
def test_sac_learns_inverted_pendulum() -> None:
    """A real, short SAC run: the policy balances the pendulum clearly longer than a uniform random policy."""
    env = env_info("InvertedPendulum-v5")
    config = SACConfig(hidden=32, batch_size=64, lr=1e-3, learning_starts=200, snapshots=2, eval_episodes=10,
                       checkpoint_every=10**6)
    random_return = evaluate_returns(uniform_policy(env.act_dim), env, 10, 123, CPU)
    work = Path(os.environ["OFFDIFF_CACHE"]) / "sac"
    run = SACRun(env, config, 1200, seed=0, device=CPU, work_dir=work, random_return=random_return,
                 progress=False).run()
    print(f"InvertedPendulum-v5: random {random_return:.1f}, SAC after 1200 steps {run.returns[-1]:.1f}")
    assert run.returns[-1] > 3 * random_return + 10


def test_local_suite_dataset_table(idp_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/local_suite_datasets.py: one row per dataset with the recipe and the returns in the data."""
    script = Path(__file__).parents[1] / "benchmarks" / "local_suite_datasets.py"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(idp_store)}
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], env=env, check=True, capture_output=True)
    rows = {row["kind"]: row for row in csv.DictReader((tmp_path / "datasets.csv").open())}
    assert set(rows) == set(KINDS)
    assert [int(rows[k]["episodes"]) for k in ("random", "medium", "expert", "medium-expert")] == [4, 4, 4, 8]
    medium = _read(idp_store, _ids()["medium"])[0]["offdiff_collect"]
    assert int(rows["medium"]["medium_step"]) == medium["medium_step"]
    assert float(rows["expert"]["expert_return"]) == round(medium["expert_return"], 1)
    assert float(rows["random"]["data_normalized"]) < float(rows["expert"]["data_normalized"])
    assert rows["medium"]["mkl_branch"] == medium["mkl_branch"]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(idp_store))
    loaded = sources.resolve(f"minari:{_ids()['medium']}").load()
    assert rows["medium"]["sha256"] == loaded.content_sha256()[:12]
    assert (tmp_path / "datasets.md").read_text().count("| local/inverteddoublependulum/") == 5
    # --check: the same collection matches its own table; another dataset's bytes or a missing one do not.
    same = subprocess.run([sys.executable, str(script), "--check", str(tmp_path / "datasets.csv")], env=env,
                          capture_output=True, text=True)
    assert same.returncode == 0 and same.stdout.count("same: local/inverteddoublependulum/") == 5, same.stdout
    other = (tmp_path / "datasets.csv").read_text().replace(rows["medium"]["sha256"], "0" * 12)
    (tmp_path / "other.csv").write_text(other + "local/hopper/medium-v0" + "," * (len(rows["medium"]) - 1) + "\n")
    differs = subprocess.run([sys.executable, str(script), "--check", str(tmp_path / "other.csv")], env=env,
                             capture_output=True, text=True)
    assert differs.returncode == 1
    assert f"DIFFERS: local/inverteddoublependulum/medium-v0 (here {rows['medium']['sha256']}, table 000000000000)" \
        in differs.stdout
    assert "MISSING: local/hopper/medium-v0" in differs.stdout and differs.stdout.count("same: ") == 4
