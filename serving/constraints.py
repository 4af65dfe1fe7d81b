"""Write the image's constraints: every distribution `manset-serving[serve,bert,use]` installs,
pinned at the version installed here, so that the image builds the same packages every time.

    python serving/constraints.py > serving/constraints.txt

(tests/test_container.py checks that the file names every distribution the extras pull in.)"""

from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EXTRAS = ("serve", "bert", "use")


def closure(name: str = "manset-serving", extras: tuple[str, ...] = EXTRAS) -> set[str]:
    """The distributions `name[extras]` installs, by their canonical names (itself left out)."""
    seen: dict[str, set[str]] = {}
    todo = [(name, set(extras))]
    while todo:
        dist, wanted = todo.pop()
        key = canonicalize_name(dist)
        if key in seen and wanted <= seen[key]:
            continue
        seen[key] = seen.get(key, set()) | wanted
        for line in metadata.requires(dist) or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e})
                                         for e in wanted or {""}):
                todo.append((req.name, set(req.extras)))
    return set(seen) - {canonicalize_name(name)}


if __name__ == "__main__":
    print("# python serving/constraints.py > serving/constraints.txt (the installed versions)")
    print("\n".join(f"{d}=={metadata.version(d)}" for d in sorted(closure())))
