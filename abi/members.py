#!/usr/bin/python3
"""The growth rule of docs/ABI.md, checked member by member:

    abi/members.py BASELINE.abi.xml CURRENT.abi.xml

For evl_handler, evl_options and struct evl_stats, every member of the
baseline must still be there, in order, with the same name, offset and type,
and the struct must not shrink; new members may only follow them. abidiff
enforces this through abi/evloop.suppr, but libabigail 2.2 also suppresses
a change to one of these structs that inserts nothing (a member retyped in
place passes it), so this check does not rely on the suppression. Exit 0 when
the rule holds, 1 with the differences otherwise, 2 on bad arguments.
"""

import sys
import xml.etree.ElementTree as ET

STRUCTS = ("evl_handler", "evl_options", "evl_stats")


class Corpus:
    def __init__(self, path):
        root = ET.parse(path).getroot()
        self.by_id = {e.get("id"): e for e in root.iter() if e.get("id")}
        self.structs = {}
        for e in root.iter("class-decl"):
            if e.get("name") in STRUCTS and e.get("is-declaration-only") != "yes":
                self.structs.setdefault(e.get("name"), e)

    def type_name(self, tid, depth=0):
        """A type as a string built from its structure, so that the ids of
        two corpora need not agree."""
        e = self.by_id.get(tid)
        if e is None or depth > 20:
            return f"?{tid}"
        tag = e.tag
        if tag in ("type-decl", "typedef-decl", "class-decl", "union-decl", "enum-decl"):
            return e.get("name") or f"anon-{tag}-{e.get('size-in-bits')}"
        if tag == "pointer-type-def":
            return self.type_name(e.get("type-id"), depth + 1) + "*"
        if tag == "qualified-type-def":
            quals = [q for q in ("const", "volatile", "restrict") if e.get(q) == "yes"]
            return " ".join(quals + [self.type_name(e.get("type-id"), depth + 1)])
        if tag == "array-type-def":
            return self.type_name(e.get("type-id"), depth + 1) + f"[{e.get('size-in-bits')}b]"
        if tag == "function-type":
            params = [self.type_name(p.get("type-id"), depth + 1)
                      for p in e.findall("parameter")]
            ret = e.find("return")
            rtype = self.type_name(ret.get("type-id"), depth + 1) if ret is not None else "?"
            return f"{rtype}({', '.join(params)})"
        return f"{tag}:{tid}"

    def members(self, name):
        s = self.structs.get(name)
        if s is None:
            return None, None
        out = []
        for dm in s.findall("data-member"):
            v = dm.find("var-decl")
            out.append((v.get("name"), int(dm.get("layout-offset-in-bits")),
                        self.type_name(v.get("type-id"))))
        return int(s.get("size-in-bits")), out


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base, cur = Corpus(sys.argv[1]), Corpus(sys.argv[2])
    problems = []
    for name in STRUCTS:
        bsize, bm = base.members(name)
        csize, cm = cur.members(name)
        if bm is None:
            problems.append(f"{name}: not in the baseline")
            continue
        if cm is None:
            problems.append(f"{name}: gone from the library")
            continue
        for i, old in enumerate(bm):
            new = cm[i] if i < len(cm) else None
            if new != old:
                problems.append(f"{name}: member {i} was {old}, now {new}")
                break
        else:
            if csize < bsize:
                problems.append(f"{name}: shrank from {bsize} to {csize} bits")
            for extra in cm[len(bm):]:
                if extra[1] < bsize:
                    problems.append(f"{name}: new member {extra} inside the old size {bsize} bits")
        print(f"members: {name}: {len(bm)} -> {len(cm)} members, {bsize} -> {csize} bits")
    for p in problems:
        print(f"members: FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
