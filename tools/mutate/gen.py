"""Mutant generation for tools/mutate/run.py: every single-point change of a
few classic kinds, line by line, on C source without a parser.

Kinds (the `op` field):
  ror    relational operator replaced (== != < <= > >=)
  lor    && <-> ||
  aor    arithmetic operator replaced (+ - * / %, += -=, ++ --)
  neg    condition of an if/while negated
  del    statement deleted (the line becomes an empty statement)
  const  integer constant replaced (0 -> 1, 1 -> 0, n -> n+1)

A mutant is identified by a hash of its file, its original line and its
mutated line (not the line number), so an id survives edits elsewhere in the
file and equivalent.md entries stay valid while the line exists.
"""
import hashlib
import re

ROR = {"==": ["!="], "!=": ["=="], "<": ["<=", ">="], "<=": ["<", ">"],
       ">": [">=", "<="], ">=": [">", "<"]}
AOR = {"+": ["-"], "-": ["+"], "*": ["/"], "/": ["*"], "%": ["*"]}

# An operator surrounded by spaces is binary in this code base's style
# (STYLE.md), which keeps pointer stars, unary minus and casts out.
BIN_OP = re.compile(r"(?<=\s)(==|!=|<=|>=|<|>|\+|-|\*|/|%)(?=\s)")
LOGIC = re.compile(r"(?<=\s)(&&|\|\|)(?=\s)")
COMPOUND = re.compile(r"(\+=|-=)")
INCDEC = re.compile(r"(\+\+|--)")
INT = re.compile(r"(?<![\w.])(\d+)(u|U|L|UL|ul|ull|ULL)?(?![\w.])")
COND = re.compile(r"^(\s*(?:\}\s*else\s+)?(?:if|while)\s*)\((.*)\)(\s*\{?\s*(?://.*|/\*.*)?)$")
STMT = re.compile(r"^\s*[A-Za-z_(*][^;{}]*;\s*(?://.*|/\*.*\*/)?\s*$")
DECL = re.compile(r"^\s*(?:const\s+|static\s+|struct\s+|unsigned\s+|enum\s+)*[A-Za-z_]\w*[\s*]+\**[A-Za-z_]\w*\s*(?:=|;|\[)")


def mutant_id(path, orig, new):
    h = hashlib.sha1(f"{path}\0{orig.strip()}\0{new.strip()}".encode()).hexdigest()
    return "m" + h[:8]


def code_part(line):
    """The line without a trailing comment, and the comment."""
    for mark in ("//", "/*"):
        i = line.find(mark)
        if i >= 0:
            return line[:i], line[i:]
    return line, ""


def in_string(code, pos):
    return code[:pos].count('"') % 2 == 1 or code[:pos].count("'") % 2 == 1


def subs(code, regex, table):
    for m in regex.finditer(code):
        if in_string(code, m.start()):
            continue
        for rep in table(m):
            yield code[:m.start()] + rep + code[m.end():]


def line_mutants(line):
    """(op, new_line) for one source line."""
    code, comment = code_part(line)
    s = code.strip()
    if not s or s.startswith("#") or s.startswith("*") or s.startswith("/*"):
        return
    out = []
    out += [("ror", c) for c in subs(code, BIN_OP, lambda m: ROR.get(m[1], []))]
    out += [("aor", c) for c in subs(code, BIN_OP, lambda m: AOR.get(m[1], []))]
    out += [("lor", c) for c in subs(code, LOGIC, lambda m: ["||" if m[1] == "&&" else "&&"])]
    out += [("aor", c) for c in subs(code, COMPOUND, lambda m: ["-=" if m[1] == "+=" else "+="])]
    out += [("aor", c) for c in subs(code, INCDEC, lambda m: ["--" if m[1] == "++" else "++"])]

    def const(m):
        n = int(m[1])
        sfx = m[2] or ""
        reps = {0: ["1"], 1: ["0", "2"]}.get(n, [str(n + 1), "0"])
        return [r + sfx for r in reps]
    out += [("const", c) for c in subs(code, INT, const)]
    m = COND.match(code.rstrip("\n"))
    if m and m[2].count("(") == m[2].count(")"):
        out.append(("neg", f"{m[1]}(!({m[2]})){m[3]}"))
    if STMT.match(code) and not DECL.match(code) and not s.startswith(("return", "case", "default")):
        indent = code[:len(code) - len(code.lstrip())]
        out.append(("del", indent + ";"))
    for op, c in out:
        new = c.rstrip("\n") + (comment.rstrip("\n") if op != "del" else "")
        if new.strip() != line.strip():
            yield op, new


def generate(files):
    """Every mutant of the files: dicts with id, file, line, op, orig, new."""
    muts, seen = [], set()
    for path in files:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        depth_comment = False
        for no, line in enumerate(lines, 1):
            # Skip block comments spanning lines, and anything at file scope
            # that is not inside a function (declarations, includes).
            if depth_comment:
                if "*/" in line:
                    depth_comment = False
                continue
            if line.lstrip().startswith("/*") and "*/" not in line:
                depth_comment = True
                continue
            if not line.startswith((" ", "\t")):
                continue
            for op, new in line_mutants(line):
                mid = mutant_id(path, line, new)
                if mid in seen:
                    continue
                seen.add(mid)
                muts.append({"id": mid, "file": path, "line": no, "op": op,
                             "orig": line, "new": new})
    return muts
