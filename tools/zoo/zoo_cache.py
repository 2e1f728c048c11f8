"""The zoo cache's layout, shared by the zoo tools: `<root>/<zoo>/<name>/meta.json` beside
the exported files (`export_zoo.py` writes it)."""

import fnmatch
import json
import os


def models(root, only=()):
    """(zoo, name, folder, meta) of every model folder under `root` that has a
    `meta.json`, in name order; with `only`, those whose name matches one of its fnmatch
    patterns. Folders starting with "." (the runner's own) are not zoos."""
    for zoo in sorted(os.listdir(root)):
        zdir = os.path.join(root, zoo)
        if zoo.startswith(".") or not os.path.isdir(zdir):
            continue
        for name in sorted(os.listdir(zdir)):
            if only and not any(fnmatch.fnmatch(name, p) for p in only):
                continue
            d = os.path.join(zdir, name)
            try:
                with open(os.path.join(d, "meta.json")) as f:
                    meta = json.load(f)
            except FileNotFoundError:
                continue
            yield zoo, name, d, meta
