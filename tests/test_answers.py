"""Copier's questions: bad answers are refused naming the question; good ones are recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.rendering import render
from tests.variants import INVALID_VARIANT, Variant

BAD_ANSWERS = [
    pytest.param("project_slug", "Billing API", id="slug-space-upper"),
    pytest.param("project_slug", "billing_api", id="slug-underscore"),
    pytest.param("project_slug", "-billing", id="slug-leading-hyphen"),
    pytest.param("project_slug", "billing--api", id="slug-double-hyphen"),
    pytest.param("project_slug", "1billing", id="slug-digit-start"),
    pytest.param("project_slug", "", id="slug-empty"),
    pytest.param("package_name", "class", id="package-keyword-class"),
    pytest.param("package_name", "match", id="package-soft-keyword-match"),
    pytest.param("package_name", "1abc", id="package-digit-start"),
    pytest.param("package_name", "billing-api", id="package-hyphen"),
    pytest.param("package_name", "Billing", id="package-uppercase"),
    pytest.param("package_name", "celery", id="package-shadows-celery"),
    pytest.param("package_name", "redis", id="package-shadows-redis"),
    pytest.param("package_name", "fastapi", id="package-shadows-fastapi"),
    pytest.param("author_email", "not-an-email", id="email-no-at"),
    pytest.param("author_email", "me@localhost", id="email-no-domain-dot"),
    pytest.param("author_email", "me @example.com", id="email-space"),
    pytest.param("project_name", "   ", id="name-blank"),
    pytest.param("author_name", "", id="author-empty"),
    pytest.param("python_version", "3.10", id="python-3.10"),
    pytest.param("python_version", "3.14", id="python-3.14"),
    pytest.param("broker", "kafka", id="broker-kafka"),
    pytest.param("broker", "Redis", id="broker-label-not-value"),
    pytest.param("result_backend", "mysql", id="backend-mysql"),
    pytest.param("result_backend", "rpc", id="backend-rpc"),
    pytest.param("ci", "jenkins", id="ci-jenkins"),
]


@pytest.mark.parametrize(("question", "value"), BAD_ANSWERS)
def test_bad_answer_is_rejected_naming_the_question(
    tmp_path: Path, question: str, value: str
) -> None:
    destination = tmp_path / "project"
    answer: dict[str, Any] = {question: value}
    with pytest.raises(ValueError) as excinfo:
        render(destination, **answer)
    message = str(excinfo.value)
    assert f"'{question}'" in message, f"error does not name {question!r}: {message}"
    rendered = [p for p in destination.rglob("*") if p.is_file()] if destination.exists() else []
    assert not rendered, f"files were rendered despite the bad answer: {rendered[:5]}"


def test_keyword_message_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keyword"):
        render(tmp_path / "p", package_name="class")


def test_shadowing_message_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shadow"):
        render(tmp_path / "p", package_name="celery")


def test_postgresql_without_beat_is_refused(tmp_path: Path) -> None:
    """Only beat purges expired results from PostgreSQL: the combination is refused."""
    destination = tmp_path / "project"
    with pytest.raises(ValueError) as excinfo:
        render(destination, **INVALID_VARIANT.answers)
    message = str(excinfo.value)
    assert "'use_beat'" in message and "postgresql" in message.lower(), message
    rendered = [p for p in destination.rglob("*") if p.is_file()] if destination.exists() else []
    assert not rendered, f"files were rendered despite the refused combination: {rendered[:5]}"


@pytest.mark.parametrize(
    ("backend", "beat"), [("redis", False), ("postgresql", True)], ids=["redis", "postgresql"]
)
def test_use_beat_defaults_on_with_postgresql(tmp_path: Path, backend: str, beat: bool) -> None:
    project = render(tmp_path / "p", result_backend=backend)
    assert project.answers["use_beat"] is beat


def test_option_defaults(tmp_path: Path) -> None:
    """With every default, the options are those of the default variant."""
    project = render(tmp_path / "p")
    for question, value in Variant().answers.items():
        assert project.answers[question] == value, question


def test_project_name_derives_slug_and_package(tmp_path: Path) -> None:
    project = render(tmp_path / "billing", project_name="Billing API")
    assert project.answers["project_slug"] == "billing-api"
    assert project.answers["package_name"] == "billing_api"
    assert (project.path / "src" / "billing_api").is_dir()


def test_punctuation_in_project_name_gives_a_valid_slug(tmp_path: Path) -> None:
    project = render(tmp_path / "p", project_name="  Hello, World! 2 ")
    assert project.answers["project_slug"] == "hello-world-2"
    assert project.answers["package_name"] == "hello_world_2"


def test_custom_answers_are_recorded(tmp_path: Path) -> None:
    answers: dict[str, Any] = {
        "project_name": "Billing API",
        "project_slug": "acme-billing",
        "package_name": "acme_billing_core",
        "description": "Invoices and payment webhooks",
        "author_name": "Ada Lovelace",
        "author_email": "ada@example.org",
        "python_version": "3.11",
        "broker": "rabbitmq",
        "result_backend": "postgresql",
        "use_flower": False,
        "use_sse": False,
        "use_email": True,
        "use_webhooks": False,
        "use_beat": True,
        "ci": "gitlab",
    }
    destination = tmp_path / "acme-billing"
    render(destination, **answers)

    answers_file = destination / ".copier-answers.yml"
    assert answers_file.is_file()
    recorded = yaml.safe_load(answers_file.read_text())
    for question, value in answers.items():
        assert recorded.get(question) == value, f"{question}: recorded {recorded.get(question)!r}"
    assert recorded.get("_src_path"), "the answers file must record the template source"
    assert recorded.get("_commit"), "the answers file must record the template commit"
    assert (destination / "src" / "acme_billing_core").is_dir()
    assert not (destination / "src" / "billing_api").exists()
