import pytest

from cnnscope.train import choose_threads
from cnnscope.train import threads as threads_module


def test_a_requested_count_is_used_as_given(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads(3) == 3


def test_auto_follows_omp_num_threads(monkeypatch):
    # serve's Train tab starts its trainer with OMP_NUM_THREADS=1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads() == 1


@pytest.mark.parametrize("load", [0.0, 9.0])
def test_auto_takes_every_core_when_threads_sleep_while_they_wait(monkeypatch, load):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    monkeypatch.setattr(threads_module, "_cores", lambda: 2)
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (load, load, load))
    assert choose_threads() == 2


@pytest.mark.parametrize(("load", "expected"), [(0.0, 2), (0.4, 2), (0.8, 1), (1.5, 1), (9.0, 1)])
def test_spinning_threads_take_the_idle_cores_and_at_least_one(monkeypatch, load, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setattr(threads_module, "_cores", lambda: 2)
    monkeypatch.setattr(threads_module.os, "getloadavg", lambda: (load, load, load))
    assert choose_threads() == expected
