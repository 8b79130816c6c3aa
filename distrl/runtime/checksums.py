"""Checksums of a checkpoint's data files, saved with it and compared before it is restored.

Orbax notices a checkpoint file that is cut short, but not bytes overwritten in place: those would be restored as
they are and could surface later as a NaN. `write` records a sha256 of every data file in `CHECKSUMS`, in the
checkpoint's own directory; `difference` names the first file that is no longer as recorded. A checkpoint without
`CHECKSUMS` (saved by an older distrl) has nothing to compare and is taken as it is.
"""

import hashlib
import json
import os

CHECKSUMS = "distrl-checksums.json"  # {path relative to the checkpoint's directory: sha256 of the file}


def data_files(step: str) -> list[str]:
  """The files of the items of the checkpoint in directory `step` (`default/`, and `metrics/` in best/), relative to
  it: what the checksums cover. The files beside the items are orbax's record of the save, written after them."""
  return sorted(os.path.relpath(os.path.join(root, name), step)
                for root, _, names in os.walk(step) if root != step for name in names)


def _digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def write(step: str) -> None:
  """Writes `CHECKSUMS` of the checkpoint in directory `step`, whole or not at all (a temporary file renamed)."""
  path = os.path.join(step, CHECKSUMS)
  with open(path + ".tmp", "w") as f:
    json.dump({name: _digest(os.path.join(step, name)) for name in data_files(step)}, f, indent=1)
  os.replace(path + ".tmp", path)


def difference(step: str) -> str | None:
  """The first way the data files of the checkpoint in directory `step` differ from its `CHECKSUMS`, in words (a file
  changed, missing, added or unreadable), or None where none does or where it has no `CHECKSUMS`."""
  try:
    with open(os.path.join(step, CHECKSUMS)) as f:
      recorded = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as error:
    return f"its {CHECKSUMS} is unreadable ({error})"
  if not isinstance(recorded, dict):
    return f"its {CHECKSUMS} is unreadable (not a mapping of files)"
  found = data_files(step)
  missing, added = sorted(recorded.keys() - set(found)), sorted(set(found) - recorded.keys())
  if missing:
    return f"{missing[0]} is missing"
  if added:
    return f"{added[0]} was not part of it when it was saved"
  for name in found:
    try:
      if _digest(os.path.join(step, name)) != recorded[name]:
        return f"{name} differs from its checksum"
    except OSError as error:
      return f"{name} is unreadable ({error.strerror})"
  return None
