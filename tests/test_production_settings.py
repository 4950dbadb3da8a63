"""Production start-up: missing variables stop it, the single-process opt-out runs the demo, and
README's production configuration passes ``manage.py check --deploy``.

Each check starts a fresh Python process: settings are read once, at start-up.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from visrec_shop import production

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")
# what the settings read besides the required ones; none of it comes from this test process
READ = ("VISREC_SINGLE_PROCESS", "DJANGO_SETTINGS_MODULE", "DEBUG", "ALLOWED_HOSTS", "VISREC_DATA_DIR", "MEDIA_ROOT")
READ += ("SERVE_MEDIA", "HTTPS_ONLY", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS")
READ += ("SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "REDIS_TIMEOUT", "DATABASE_CONNECT_TIMEOUT")
SHOW_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
    "'eager': s.CELERY_TASK_ALWAYS_EAGER, 'cache': s.CACHES['default'], 'serve_media': s.SERVE_MEDIA, "
    "'secret_key': s.SECRET_KEY, 'secure_cookies': [s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE], "
    "'hsts': s.SECURE_HSTS_SECONDS, 'proxy_header': getattr(s, 'SECURE_PROXY_SSL_HEADER', None), "
    "'connect_timeout': s.DATABASES['default']['OPTIONS'].get('connect_timeout')}))"
)


def _env(**extra: str) -> dict[str, str]:
    """This environment without anything the settings read (the suite sets the opt-out), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in (*REQUIRED, *READ)}
    return {**env, "DJANGO_SETTINGS_MODULE": "visrec_shop.settings", **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _documented_production_env() -> dict[str, str]:
    """The ``export`` lines of README's production configuration (a fresh random ``SECRET_KEY``)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Production configuration\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    env = {}
    for name, value in re.findall(r"^export (\w+)=(\S+)", block, re.M):
        env[name] = value.strip("'\"")
    assert set(REQUIRED) | {"DEBUG", "ALLOWED_HOSTS"} <= set(env), env
    env["SECRET_KEY"] = secrets.token_urlsafe(50)  # README reads it from a file
    return env


def test_production_start_without_its_variables_names_each_and_starts_nothing(tmp_path):
    # when: DEBUG off, no opt-out, none of the production variables
    done = _run(["manage.py", "check"], _env(VISREC_DATA_DIR=str(tmp_path)))
    # then: one clear error listing every missing variable with what to set, and the way out for the demo
    assert done.returncode != 0
    message = done.stderr.split("ImproperlyConfigured: ", 1)[1]
    for name in REQUIRED:
        assert f"\n  {name}: " in message
    assert "redis://" in message and "postgres://" in message and "VISREC_SINGLE_PROCESS=1" in message
    assert not (tmp_path / "pgdata").exists()  # no embedded database started behind the owner's back
    assert not (tmp_path / "secret_key").exists()


def test_the_error_names_only_what_is_missing_and_debug_or_the_opt_out_need_nothing():
    given = {"SECRET_KEY": "k" * 50, "DATABASE_URL": "postgres://db/shop", "REDIS_URL": " "}
    with pytest.raises(ImproperlyConfigured) as error:
        production.check_environment(given, debug=False, single_process=False)
    assert "CELERY_BROKER_URL: " in str(error.value) and "REDIS_URL: " in str(error.value)
    assert "SECRET_KEY: " not in str(error.value) and "DATABASE_URL: " not in str(error.value)
    production.check_environment({}, debug=True, single_process=False)
    production.check_environment({}, debug=False, single_process=True)


def test_the_single_process_opt_out_runs_on_the_demo_defaults_with_a_key_of_its_own(tmp_path):
    # given: the opt-out and nothing else (a database URL only so that no server is started here)
    env = _env(VISREC_SINGLE_PROCESS="1", VISREC_DATA_DIR=str(tmp_path), DATABASE_URL="postgres://127.0.0.1:1/x")
    # when
    done = _run(["-c", SHOW_SETTINGS], env)
    again = _run(["-c", SHOW_SETTINGS], env)
    # then: tasks in-process, a local cache, media served, plain http, and a key made for this installation
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["eager"] is True and shown["cache"]["BACKEND"].endswith("LocMemCache") and shown["serve_media"]
    assert shown["secure_cookies"] == [False, False] and shown["hsts"] == 0
    key = (tmp_path / "secret_key").read_text().strip()
    assert shown["secret_key"] == key and len(key) >= 50 and "insecure" not in key
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert json.loads(again.stdout.strip().splitlines()[-1])["secret_key"] == key  # every process shares it


def test_the_documented_production_configuration_passes_the_deploy_check():
    env = _env(**_documented_production_env())
    done = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_settings_serve_media_elsewhere_and_time_out_quickly():
    done = _run(["-c", SHOW_SETTINGS], _env(**_documented_production_env()))
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["eager"] is False and not shown["serve_media"]
    assert shown["secure_cookies"] == [True, True] and shown["hsts"] >= 31_536_000
    assert shown["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert shown["cache"]["BACKEND"] == "visrec_shop.cache.RedisCache"
    assert 0 < shown["cache"]["OPTIONS"]["socket_connect_timeout"] < 1
    assert 0 < shown["cache"]["OPTIONS"]["socket_timeout"] < 1
    assert 2 <= shown["connect_timeout"] <= 5
