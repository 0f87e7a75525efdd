"""Compare the project's OpenAPI schemas with BTCPay's Greenfield reference files
(/work/shared/reference/greenfield, or BUSANPAY_GREENFIELD_REFERENCE) where both describe
the same thing: every field we send that the reference names has the reference's JSON type,
and enum values we send are among the reference's."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REFERENCE = Path(os.environ.get("BUSANPAY_GREENFIELD_REFERENCE",
                                "/work/shared/reference/greenfield"))


def reference_schema(file: str, name: str) -> dict:
    """The named schema of a reference file, its allOf parts merged, refs resolved across
    the files (flat enough for a field-by-field comparison)."""
    if not REFERENCE.is_dir():
        pytest.skip(f"the Greenfield reference files are not at {REFERENCE}")
    return _resolve({"$ref": f"{file}#/components/schemas/{name}"}, file)


def _load(file: str) -> dict:
    return json.loads((REFERENCE / file).read_text())


def _lookup(ref: str, current: str) -> tuple[dict, str]:
    file, _, pointer = ref.partition("#")
    file = file or current
    node = _load(file)
    for part in pointer.strip("/").split("/"):
        node = node[part]
    if "components" in pointer and node is None:
        raise KeyError(ref)
    return node, file


def _find_component(name: str, current: str) -> tuple[dict, str]:
    for candidate in [current, *sorted(p.name for p in REFERENCE.glob("*.json"))]:
        schemas = _load(candidate).get("components", {}).get("schemas", {})
        if name in schemas:
            return schemas[name], candidate
    raise KeyError(name)


def _resolve(node: dict, file: str, depth: int = 0) -> dict:
    if depth > 12:
        return node
    if "$ref" in node:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        try:
            target, where = _lookup(ref, file)
        except KeyError:
            target, where = _find_component(name, file)
        return _resolve({**target, **{k: v for k, v in node.items() if k != "$ref"}}, where,
                        depth + 1)
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for part in node.get("allOf", []):
        part = _resolve(part, file, depth + 1)
        props = {**part.get("properties", {}), **merged.get("properties", {})}
        merged = {**part, **merged}
        if props:
            merged["properties"] = props
    if "properties" in merged:
        merged["properties"] = {k: _resolve(v, file, depth + 1)
                                for k, v in merged["properties"].items()}
    if isinstance(merged.get("items"), dict):
        merged["items"] = _resolve(merged["items"], file, depth + 1)
    return merged


def _json_types(schema: dict) -> set[str]:
    kinds = schema.get("type")
    if kinds is None:
        if "const" in schema:
            return {type_name(schema["const"])}
        if "enum" in schema:
            return {type_name(v) for v in schema["enum"]}
        return set()
    kinds = set(kinds if isinstance(kinds, list) else [kinds])
    if schema.get("nullable"):
        kinds.add("null")
    return kinds


def type_name(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            type(None): "null", list: "array", dict: "object"}[type(value)]


def check_against_reference(ours: dict, theirs: dict, where: str = "",
                            request: bool = False) -> list[str]:
    """Differences between a schema of ours and the reference's: for what we send, our types
    must be among the reference's; for a request (`request`), we must accept every type the
    reference allows."""
    problems = []
    for name, mine in ours.get("properties", {}).items():
        ref_prop = theirs.get("properties", {}).get(name)
        if ref_prop is None:
            continue
        mine_kinds, ref_kinds = _json_types(mine), _json_types(ref_prop)
        if ref_kinds and mine_kinds:
            widened = ref_kinds | ({"number"} if "integer" in ref_kinds else set()) | \
                ({"integer"} if "number" in ref_kinds else set())
            extra = (ref_kinds - mine_kinds) if request else (mine_kinds - widened)
            if extra - {"null"}:
                problems.append(f"{where}{name}: ours {sorted(mine_kinds)}, "
                                f"reference {sorted(ref_kinds)}")
        ref_enum = ref_prop.get("enum")
        values = mine.get("enum") or ([mine["const"]] if "const" in mine else None)
        if ref_enum and values and not request:
            unknown = [v for v in values if v is not None and v not in ref_enum]
            if unknown:
                problems.append(f"{where}{name}: values {unknown} not in the reference's "
                                f"{ref_enum}")
        if "properties" in mine and "properties" in ref_prop:
            problems += check_against_reference(mine, ref_prop, f"{where}{name}.", request)
    return problems


def our_schema(doc: dict, name: str) -> dict:
    """One of our component schemas with local refs resolved (one level of nesting deep)."""
    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(node, dict) and "anyOf" in node:
            first = [n for n in node["anyOf"] if n != {"type": "null"}]
            node = {**resolve(first[0]), "type": [*_json_types(resolve(first[0])), "null"]} \
                if first else node
        if isinstance(node, dict) and "properties" in node:
            node = {**node, "properties": {k: resolve(v) for k, v in node["properties"].items()}}
        return node
    return resolve(doc["components"]["schemas"][name])


def assert_matches_reference(doc: dict, ours: str, file: str, theirs: str,
                             deliberate: tuple[str, ...] = ()) -> None:
    """`ours` ending in `Request` is checked as a request (we accept what the reference
    sends), anything else as a response."""
    mine, reference = our_schema(doc, ours), reference_schema(file, theirs)
    shared = set(mine.get("properties", {})) & set(reference.get("properties", {}))
    assert shared, f"{ours} and the reference's {theirs} share no field"
    problems = [p for p in check_against_reference(mine, reference,
                                                   request=ours.endswith("Request"))
                if p.split(":")[0] not in deliberate]
    assert not problems, f"{ours} differs from the reference's {theirs}: {problems}"
