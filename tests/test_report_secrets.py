"""Evaluation reports get shared: they must not carry the web login or the Milvus credentials."""

from __future__ import annotations

import json

from qa.config import Settings
from qa.evaluation.report import _public_settings


def test_report_settings_hide_the_login_and_the_milvus_token() -> None:
    settings = Settings.load(auth="ana:hunter2", milvus_token="root:Milvus-s3cret", milvus_uri="http://db:19530")
    shown = json.dumps(_public_settings(settings))
    assert "hunter2" not in shown and "s3cret" not in shown
    public = _public_settings(settings)
    assert public["auth"] == public["milvus_token"] == "(set)"
    assert public["milvus_uri"] == "http://db:19530"  # where it ran is not a secret
    assert _public_settings(Settings.load())["milvus_token"] == ""  # unset stays visibly unset
