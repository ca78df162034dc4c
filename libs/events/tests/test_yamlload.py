"""The one YAML loader: limits checked before anything is built, the same for every caller."""

from __future__ import annotations

import pytest
import yaml

from ferry_events import (
    YamlLimitExceeded,
    YamlLimits,
    check_yaml_limits,
    load_yaml_document,
    load_yaml_documents,
)


def _nested(depth: int) -> str:
    text = "leaf"
    for _ in range(depth):
        text = f"{{a: {text}}}"
    return text


def test_documents_load_as_plain_data() -> None:
    assert load_yaml_documents("a: 1\n---\n---\n- b\n") == [{"a": 1}, None, ["b"]]
    assert load_yaml_document("---\nkind: Service\n") == {"kind": "Service"}


@pytest.mark.parametrize("depth", [600, 20_000])
def test_deep_nesting_is_refused_without_recursion(depth: int) -> None:
    with pytest.raises(YamlLimitExceeded, match="nested more than 64 levels deep") as caught:
        load_yaml_documents(_nested(depth))
    assert caught.value.line == 1


def test_nesting_up_to_the_limit_loads() -> None:
    assert load_yaml_document(_nested(64)) is not None


def test_aliases_are_counted() -> None:
    laughs = "a: &a [x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20)
    )
    with pytest.raises(YamlLimitExceeded, match="more than 8 aliases"):
        check_yaml_limits(laughs, YamlLimits(max_aliases=8))


def test_documents_and_size_are_limited() -> None:
    with pytest.raises(YamlLimitExceeded, match="more than 2 documents"):
        load_yaml_documents("a: 1\n---\nb: 2\n---\nc: 3\n", YamlLimits(max_documents=2))
    with pytest.raises(YamlLimitExceeded, match="over the limit of 10"):
        load_yaml_documents("a: ééééééé\n", YamlLimits(max_bytes=10))


def test_tags_that_build_objects_are_refused() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml_documents("a: !!python/object/apply:os.system ['true']\n")


def test_one_document_means_one() -> None:
    with pytest.raises(yaml.YAMLError, match="expected one YAML document, found 2"):
        load_yaml_document("a: 1\n---\nb: 2\n")
