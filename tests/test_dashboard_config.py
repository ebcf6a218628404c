"""The `dashboard:` config section: on by default, can be switched off, and a wrong key is a clear config error."""

from __future__ import annotations

import pytest

from switchboard.app import Gateway
from switchboard.config import ConfigError, config_from_dict


def _gateway(tmp_path, dashboard=None) -> Gateway:
    data = {"models": {}, "storage": {"sqlite_path": str(tmp_path / "g.db")}}
    if dashboard is not None:
        data["dashboard"] = dashboard
    return Gateway(config_from_dict(data))


def test_dashboard_is_on_by_default(tmp_path):
    gw = _gateway(tmp_path)
    assert "/ui" in gw.routes and "/admin/dashboard/overview" in gw.routes
    assert str(gw.dashboard.reports_dir) == "reports"


def test_dashboard_can_be_switched_off(tmp_path):
    gw = _gateway(tmp_path, {"enabled": False})
    assert "/ui" not in gw.routes and not any(p.startswith("/admin/dashboard") for p in gw.routes)


def test_reports_dir_is_read(tmp_path):
    gw = _gateway(tmp_path, {"reports_dir": str(tmp_path / "r")})
    assert gw.dashboard.reports_dir == tmp_path / "r"


@pytest.mark.parametrize("section, message", [({"reports_folder": "x"}, "unknown key 'reports_folder'"),
                                              ({"enabled": "yes"}, "must be true or false")])
def test_bad_dashboard_settings_are_config_errors(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        _gateway(tmp_path, section)
