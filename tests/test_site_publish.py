"""Publishing the site to S3 (moto's in-process mock) and deriving its website URL."""
from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from _util.errors import EXIT_PARTIAL, DeliveryError
from _util.site.publish import make_s3_client, normalize_prefix, publish, website_url

BUCKET = "cost-site"


@pytest.fixture(autouse=True)
def fake_aws_env(clean_env, monkeypatch):
    """Test credentials only (conftest's clean_env), and AWS's own host names, which moto
    intercepts, instead of clean_env's closed local endpoint."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")


@pytest.fixture
def site(tmp_path) -> tuple[Path, list[Path]]:
    site_dir = tmp_path / "site"
    day_dir = site_dir / "reports" / "2024-05-01"
    day_dir.mkdir(parents=True)
    (site_dir / "index.html").write_text("<html>index</html>", encoding="utf-8")
    files = []
    for name, data in [
        ("index.html", b"<html>report</html>"),
        ("spike-ec2-1a2b3c4d.html", b"<html>plot</html>"),
        ("spike-ec2-1a2b3c4d.png", b"\x89PNG\r\n\x1a\n...."),
        ("report.json", b"{}"),
    ]:
        (day_dir / name).write_bytes(data)
        files.append(day_dir / name)
    return site_dir, files


@pytest.fixture
def s3():
    with mock_aws():
        client = make_s3_client()
        client.create_bucket(Bucket=BUCKET)
        yield client


def _objects(s3) -> dict[str, dict]:
    listing = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: s3.head_object(Bucket=BUCKET, Key=o["Key"]) for o in listing}


def test_publish_without_prefix_uploads_files_and_site_index_at_their_site_paths(s3, site):
    site_dir, files = site
    result = publish(files, site_dir, BUCKET, "", s3)
    assert result.uploaded == 5
    assert set(_objects(s3)) == {
        "index.html",
        "reports/2024-05-01/index.html",
        "reports/2024-05-01/spike-ec2-1a2b3c4d.html",
        "reports/2024-05-01/spike-ec2-1a2b3c4d.png",
        "reports/2024-05-01/report.json",
    }
    assert result.keys[-1] == "index.html"  # the index never links ahead of its pages
    body = s3.get_object(Bucket=BUCKET, Key="reports/2024-05-01/report.json")["Body"].read()
    assert body == b"{}"


@pytest.mark.parametrize("prefix", ["bot", "/bot/", "bot//"])
def test_publish_puts_keys_under_the_normalised_prefix(s3, site, prefix):
    site_dir, files = site
    result = publish(files, site_dir, BUCKET, prefix, s3)
    assert result.prefix == "bot/"
    assert "bot/index.html" in _objects(s3)
    assert "bot/reports/2024-05-01/spike-ec2-1a2b3c4d.png" in _objects(s3)
    assert all(k.startswith("bot/") for k in _objects(s3))


def test_publish_sets_content_type_and_cache_control_per_file_kind(s3, site):
    site_dir, files = site
    publish(files, site_dir, BUCKET, "", s3)
    objects = _objects(s3)
    html = objects["reports/2024-05-01/spike-ec2-1a2b3c4d.html"]
    png = objects["reports/2024-05-01/spike-ec2-1a2b3c4d.png"]
    data = objects["reports/2024-05-01/report.json"]
    index = objects["index.html"]
    assert html["ContentType"] == "text/html; charset=utf-8"
    assert png["ContentType"] == "image/png"
    assert data["ContentType"] == "application/json"
    assert png["CacheControl"] == "max-age=86400"
    assert index["CacheControl"] == "max-age=300"
    assert data["CacheControl"] == "max-age=300"


def test_publish_uploads_the_site_index_even_when_not_listed(s3, site):
    site_dir, _ = site
    result = publish([], site_dir, BUCKET, "", s3)
    assert result.keys == ("index.html",)


def test_publish_to_missing_bucket_names_bucket_and_iam_action(s3, site):
    site_dir, files = site
    with pytest.raises(DeliveryError) as err:
        publish(files, site_dir, "no-such-bucket", "bot", s3)
    message = str(err.value)
    assert "no-such-bucket does not exist" in message and "s3:PutObject" in message
    assert "arn:aws:s3:::no-such-bucket/bot/*" in message
    assert "\n" not in message
    assert err.value.exit_code == EXIT_PARTIAL


def test_publish_denied_put_names_bucket_and_iam_action(site):
    site_dir, files = site
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("put_object", "AccessDenied", "Access Denied", 403)
        with pytest.raises(DeliveryError) as err:
            publish(files, site_dir, BUCKET, "", client)
    message = str(err.value)
    assert BUCKET in message and "s3:PutObject" in message and "AccessDenied" in message


def test_publish_refuses_a_file_outside_the_site_folder(s3, site, tmp_path):
    site_dir, files = site
    stray = tmp_path / "secret.txt"
    stray.write_text("x")
    with pytest.raises(ValueError, match="not inside the site folder"):
        publish([stray], site_dir, BUCKET, "", s3)


def test_s3_client_honours_aws_endpoint_url_s3(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    client = make_s3_client()
    assert client.meta.endpoint_url == "http://127.0.0.1:9000"
    assert client.meta.config.retries["mode"] == "standard"


@pytest.mark.parametrize(
    ("region", "prefix", "expected"),
    [
        ("us-east-1", "", "http://b.s3-website-us-east-1.amazonaws.com"),
        ("us-west-2", "", "http://b.s3-website-us-west-2.amazonaws.com"),
        ("eu-west-1", "bot", "http://b.s3-website-eu-west-1.amazonaws.com/bot"),
        ("ap-southeast-2", "", "http://b.s3-website-ap-southeast-2.amazonaws.com"),
        ("eu-central-1", "", "http://b.s3-website.eu-central-1.amazonaws.com"),
        ("us-east-2", "/a/b/", "http://b.s3-website.us-east-2.amazonaws.com/a/b"),
        ("ap-south-1", "", "http://b.s3-website.ap-south-1.amazonaws.com"),
        ("cn-north-1", "", "http://b.s3-website.cn-north-1.amazonaws.com.cn"),
        ("", "", "http://b.s3-website-us-east-1.amazonaws.com"),
    ],
)
def test_website_url_uses_the_regions_dash_or_dot_endpoint(region, prefix, expected):
    assert website_url("b", region, prefix) == expected


@pytest.mark.parametrize(
    ("prefix", "expected"), [("", ""), ("/", ""), ("a", "a/"), ("/a/b/", "a/b/"), ("a//b", "a/b/")]
)
def test_normalize_prefix(prefix, expected):
    assert normalize_prefix(prefix) == expected
