"""The suites behind optional extras (`distrl.envs.SUITES`): naming one whose extra is missing is one line naming the
extra to install; the adapters and the suites are imported only when an env_name names them."""

import subprocess
import sys

import pytest

from distrl import envs, ppo
from distrl.runtime import programs
from distrl.configs import ppo as ppo_config
from distrl.errors import ConfigError


@pytest.mark.unit
@pytest.mark.parametrize("suite, env_id", [("brax", "inverted_pendulum"), ("craftax", "Craftax-Classic-Symbolic-v1"),
                                           ("jumanji", "Snake-v1")])
def test_a_missing_suite_names_its_extra_in_one_line(suite, env_id, monkeypatch):
  # `None` in sys.modules makes `import <suite>` (and its submodules, which an earlier test may have imported)
  # raise ModuleNotFoundError, as an uninstalled package does; the adapter is dropped so that it is imported afresh.
  for name in [suite, *(m for m in sys.modules if m.startswith(f"{suite}."))]:
    monkeypatch.setitem(sys.modules, name, None)
  monkeypatch.delitem(sys.modules, envs.SUITES[suite], raising=False)
  with pytest.raises(ConfigError) as error:
    envs.make(f"{suite}:{env_id}")
  message = str(error.value)
  assert message == (f"env_name='{suite}:{env_id}' needs the {suite} extra ({suite} is not installed): "
                     f"pip install 'distrl[{suite}]' (pip install -e '.[{suite}]' in a clone)")


def test_no_suite_is_imported_until_named():
  """A fresh interpreter that makes a gymnax environment imports none of the suites (Brax alone takes seconds)."""
  code = ("import sys; from distrl import envs; envs.make('CartPole-v1'); "
          "print(sorted(m for m in ('brax', 'craftax', 'jumanji') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]"


@pytest.mark.unit
@pytest.mark.parametrize("preset", [name for name in ppo_config.PRESETS if name.partition(":")[0] in envs.SUITES])
def test_every_suite_preset_is_a_valid_run_on_1_and_8_devices(preset):
  """The presets' sizes pass the checks a run makes first (e.g. num_steps splitting into num_minibatches)."""
  config = ppo_config.get_config(preset)
  for devices in (1, 8):
    programs.check_run_config(config, devices)
    assert ppo.sizes(config, devices).steps_per_update == config.num_envs * config.num_steps
