"""Flex Template entry point: the launcher runs this file with the template's parameters as ``--name=value``.

Template parameter names cannot hold dashes or repeat, so this maps them onto ``aeops augment``'s flags
(``model_dir`` -> ``--model-dir``, ``force=true`` -> ``--force``, ``overrides`` "a=1;b=2" -> ``--set a=1 --set b=2``)
and fetches a ``gs://`` config to a local file (configs are read from local disk). Everything else — the
Dataflow options the launcher adds (``--project``, ``--region``, ``--temp_location``, ...) — passes through
to Beam, and the command's exit codes and one-line errors stay those of ``aeops``.
"""

import sys
import tempfile

from aeops import storage
from aeops.cli import main

RENAMED = {"model_dir": "model-dir"}


def translate(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep:
            out.append(arg)
        elif name == "force":
            out += ["--force"] if value.lower() == "true" else []
        elif name == "overrides":
            out += [item for pair in value.split(";") if pair.strip() for item in ("--set", pair.strip())]
        elif name == "config" and storage.is_remote(value):
            with tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as local:
                local.write(storage.read_bytes(value))
            out.append(f"--config={local.name}")
        else:
            out.append(f"--{RENAMED.get(name, name)}={value}")
    return out


if __name__ == "__main__":
    sys.exit(main(["augment", *translate(sys.argv[1:])]))
