"""Credentials in URLs are redacted in every userinfo form: RFC 3986 (unreserved, %-escapes, sub-delims, ":")
and the raw characters real passwords hold, which make parsers take the host after the last "@"."""

import pytest

from kdflow.redact import redact

SECRET = "S3cr"
URLS = [  # (text, what must remain)
    ("http://alice:S3cr@host:5000/api", "http://***@host:5000/api"),
    ("https://alice:p@S3cr@ss@mlflow.example.com/x", "https://***@mlflow.example.com/x"),  # raw "@" (issue 25)
    ("https://alice:p%40S3cr%3A@host/", "https://***@host/"),                               # %-escaped
    ("http://a:S3cr!$&'()*+,;=@host/", "http://***@host/"),                                 # sub-delims
    ("http://a:S3cr-._~@host", "http://***@host"),                                          # unreserved
    ("http://a:b:S3cr:c@host", "http://***@host"),                                          # ":" in password
    ("http://:S3cr@host", "http://***@host"),                                               # no user
    ("http://S3cr-token@host/", "http://***@host/"),                                        # user only (a token)
    ("http://alice:@S3cr@host", "http://***@host"),                                         # empty password
    ("http://a:S3cr@[::1]:8080/x", "http://***@[::1]:8080/x"),                              # IPv6 host
    ("http://a:S3cr\"<>{}|^`\\@host/", "http://***@host/"),                                 # not RFC, still redacted
    ("http://a:pa/S3cr@host/", "http://***@host/"),                                         # raw "/"
    ("http://a:pa?S3cr@host/", "http://***@host/"),                                         # raw "?"
    ("http://a:pa#S3cr@host/", "http://***@host/"),                                         # raw "#"
    ("postgresql+psycopg2://u:S3cr@db:5432/mlflow", "postgresql+psycopg2://***@db:5432/mlflow"),
    ("HTTPS://U:S3cr@HOST", "HTTPS://***@HOST"),
    ("error at 'http://u:S3cr@h/x' (retry)", "error at 'http://***@h/x' (retry)"),          # inside a repr
    ("a http://u:S3cr@h1 and b https://v:S3cr@h2/", "a http://***@h1 and b https://***@h2/"),
    ("https://h/x?access_token=S3cr&x=1&sig=S3cr", "https://h/x?access_token=***&x=1&sig=***"),
    ("https://u:S3cr@h/x?password=S3cr", "https://***@h/x?password=***"),
]
UNCHANGED = ["sqlite:///mlflow.db", "models:/student@champion", "runs:/abc/teacher", "user@example.com",
             "http://127.0.0.1:5000/api/2.0", "file:///tmp/a b@c"]


@pytest.mark.parametrize(("text", "want"), URLS)
def test_every_userinfo_form_is_redacted(text, want):
    got = redact(text)
    assert got == want
    assert SECRET not in got


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_credentials_is_left_alone(text):
    assert redact(text) == text
