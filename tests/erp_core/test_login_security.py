"""Login security: the password policy, a change by the user, an administrator's reset that forces a
change, sessions (list, end one, log out everywhere), throttling an attacker cannot turn against the
real user, the same argon2 work for unknown users, and parallel guesses on PostgreSQL over HTTP
against a real server never checking more passwords than the allowance."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import requests
from sqlalchemy import select

from erp_core.models import AuditLog, LoginThrottle
from erp_core.serve import Server
from erp_core.services import passwords, throttle
from tests.conftest import PASSWORD, Erp, fresh_database_url

NEW = "plum tractor velvet ocean"


def login(erp, username, password, addr="127.0.0.1"):
    return erp.client.post("/api/v1/auth/login", json={"username": username, "password": password},
                           environ_base={"REMOTE_ADDR": addr})


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


# ---- policy -------------------------------------------------------------------------------------

@pytest.mark.parametrize("password, rule", [
    ("short pass", "min_length"),            # 10 characters
    ("Sales", None),                          # (replaced below by the username rule)
    ("password1234", "not_common"),           # on the shipped list
])
def test_policy_refusals_name_the_rule(sqlite_erp, password, rule):
    if rule is None:
        password, rule = "sales_manager_1", "not_username"
        r = sqlite_erp.req("POST", "/users", json={"username": password, "password": password.upper(),
                                                   "role": "sales"})
    else:
        r = sqlite_erp.req("POST", "/users", json={"username": "newbie", "password": password, "role": "sales"})
    assert r.status_code == 422, r.json
    assert r.json["rule"] == rule and r.json["field"] == "password" and r.json["fix"]


def test_the_common_list_is_shipped_and_real():
    common = passwords.common_passwords()
    assert len(common) > 19_000 and {"password", "123456", "qwerty"} <= common
    assert passwords.policy_problem(NEW, "sales") is None


# ---- change, reset, forced change ---------------------------------------------------------------

def test_change_needs_the_current_password_and_ends_the_other_sessions(sqlite_erp):
    erp = sqlite_erp
    mine, other = login(erp, "sales", PASSWORD).json["token"], login(erp, "sales", PASSWORD, "10.0.0.2").json["token"]
    r = erp.client.post("/api/v1/me/password", headers=bearer(mine),
                        json={"current_password": "not it at all", "new_password": NEW})
    assert r.status_code == 422 and r.json["field"] == "current_password"
    r = erp.client.post("/api/v1/me/password", headers=bearer(mine),
                        json={"current_password": PASSWORD, "new_password": "qwertyuiop123"})
    assert r.status_code == 422 and r.json["rule"] == "not_common"
    r = erp.client.post("/api/v1/me/password", headers=bearer(mine),
                        json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 200 and r.json["sessions_ended"] >= 1
    assert erp.client.get("/api/v1/me", headers=bearer(other)).status_code == 401
    assert erp.client.get("/api/v1/me", headers=bearer(mine)).status_code == 200
    assert login(erp, "sales", PASSWORD, "10.0.0.3").status_code == 401
    assert login(erp, "sales", NEW, "10.0.0.3").status_code == 200
    changed = erp.get("/audit-log", query={"entity": "users", "action": "update"})["items"][0]
    assert changed["actor"] == "sales" and changed["after"]["password_hash"] == "*** (changed)"


def test_a_reset_forces_a_change_before_anything_else(sqlite_erp):
    erp = sqlite_erp
    old = login(erp, "sales", PASSWORD).json["token"]
    uid = erp.get("/me", role="sales")["id"]
    reset = erp.post(f"/users/{uid}/password-reset", expect=200)
    temporary = reset["temporary_password"]
    assert len(temporary) >= passwords.MIN_LENGTH and reset["sessions_ended"] >= 1
    assert erp.client.get("/api/v1/me", headers=bearer(old)).status_code == 401
    r = login(erp, "sales", temporary)
    assert r.status_code == 200 and r.json["must_change_password"] is True
    tok = r.json["token"]
    r = erp.client.get("/api/v1/sales-orders", headers=bearer(tok))
    assert r.status_code == 403 and "/api/v1/me/password" in r.json["fix"]
    assert erp.client.get("/api/v1/me", headers=bearer(tok)).status_code == 200
    r = erp.client.post("/api/v1/me/password", headers=bearer(tok),
                        json={"current_password": temporary, "new_password": temporary})
    assert r.status_code == 422
    r = erp.client.post("/api/v1/me/password", headers=bearer(tok),
                        json={"current_password": temporary, "new_password": NEW})
    assert r.status_code == 200
    assert erp.client.get("/api/v1/sales-orders", headers=bearer(tok)).status_code == 200
    assert erp.client.post(f"/api/v1/users/{uid}/password-reset", headers=bearer(tok)).status_code == 403


def test_guessing_the_current_password_in_a_change_is_throttled(sqlite_erp):
    erp = sqlite_erp
    tok = login(erp, "purchasing", PASSWORD).json["token"]
    for i in range(throttle.CHANGE_FREE):
        r = erp.client.post("/api/v1/me/password", headers=bearer(tok),
                            json={"current_password": f"guess {i} of the password", "new_password": NEW})
        assert r.status_code == 422
    r = erp.client.post("/api/v1/me/password", headers=bearer(tok),
                        json={"current_password": PASSWORD, "new_password": NEW})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


# ---- sessions -----------------------------------------------------------------------------------

def test_sessions_listed_ended_and_logout_everywhere(sqlite_erp):
    erp = sqlite_erp
    a = erp.client.post("/api/v1/auth/login", json={"username": "finance", "password": PASSWORD},
                        headers={"User-Agent": "probe-a/1"}, environ_base={"REMOTE_ADDR": "10.1.0.1"}).json["token"]
    b, c = (login(erp, "finance", PASSWORD, f"10.1.0.{i}").json["token"] for i in (2, 3))
    listed = erp.client.get("/api/v1/me/sessions", headers=bearer(c)).json["items"]
    assert len(listed) == 3 and [s["current"] for s in listed] == [True, False, False]
    first = listed[-1]
    assert first["remote_addr"] == "10.1.0.1" and first["user_agent"] == "probe-a/1" and first["last_seen_at"]
    assert erp.client.delete(f"/api/v1/me/sessions/{first['id']}", headers=bearer(c)).status_code == 204
    assert erp.client.get("/api/v1/me", headers=bearer(a)).status_code == 401
    # someone else's session id is not found (not ended)
    assert erp.client.delete(f"/api/v1/me/sessions/{listed[1]['id']}",
                             headers=bearer(erp.token("sales"))).status_code == 404
    r = erp.client.post("/api/v1/me/logout-everywhere", headers=bearer(c))
    assert r.status_code == 200 and r.json["sessions_ended"] == 2
    assert all(erp.client.get("/api/v1/me", headers=bearer(t)).status_code == 401 for t in (b, c))
    events = [e["after"].get("event") for e in erp.get("/audit-log", query={"action": "logout"})["items"]]
    assert "logout_everywhere" in events and "session_ended" in events


# ---- throttling ---------------------------------------------------------------------------------

def allowance(free: int, seconds: float) -> int:
    """Guesses one address may have checked on one account within `seconds`: the free ones, plus one each
    time a back-off (2, 4, 8 ... s) ran out meanwhile (a loaded machine answers slowly enough for some to)."""
    k = 0
    while 2 ** (k + 2) - 2 <= seconds:
        k += 1
    return free + k


def test_an_attacker_address_does_not_lock_the_real_user_out(sqlite_erp):
    erp = sqlite_erp
    t0 = time.monotonic()
    responses = [login(erp, "admin", f"guess number {i}", "203.0.113.7") for i in range(30)]
    elapsed = time.monotonic() - t0
    statuses = [r.status_code for r in responses]
    assert statuses[:5] == [401] * 5 and set(statuses) == {401, 429}
    assert statuses.count(401) <= allowance(5, elapsed), (statuses, elapsed)
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1 and "ask an administrator" not in refused.json["fix"]
    # the real user, at another address, logs in at once
    assert login(erp, "admin", PASSWORD, "198.51.100.20").status_code == 200
    with erp.db.session(write=False) as s:  # every checked guess was charged, no more
        assert throttle.state(s, "admin", "203.0.113.7")["pair"] == statuses.count(401)


def test_an_account_under_attack_from_many_addresses_leaves_the_real_user_an_allowance(sqlite_erp):
    erp = sqlite_erp
    for i in range(4 * 5):  # 20 addresses, one failure each: the account counter reaches its threshold
        assert login(erp, "finance", "wrong guess here", f"192.0.2.{i + 1}").status_code == 401
    # an address that failed ALLOWANCE times on it now waits the account's back-off...
    for _ in range(throttle.ALLOWANCE):
        assert login(erp, "finance", "wrong again here", "192.0.2.200").status_code == 401
    assert login(erp, "finance", PASSWORD, "192.0.2.200").status_code == 429
    # ...but the real user at a clean address, even after one typing mistake, is not held back
    assert login(erp, "finance", "typo in passwrd", "198.51.100.5").status_code == 401
    assert login(erp, "finance", PASSWORD, "198.51.100.5").status_code == 200


def test_back_off_doubles_and_is_capped():
    assert [throttle.backoff(n, 5, 900) for n in (4, 5, 6, 7, 14, 40)] == [0, 2, 4, 8, 900, 900]


def test_unknown_users_cost_the_same_time_as_known_ones(sqlite_erp):
    """Median of 15 interleaved attempts each (every one from its own address: no throttling). Both do one
    argon2id verification (~tens of ms) and the same queries; the old code answered unknown users 5-100x
    faster. A factor of 1.5 either way leaves room for a loaded machine while still failing on any skipped
    hash (which would be ≥ 5x)."""
    erp = sqlite_erp
    login(erp, "nobody-at-all", "warm up the hash", "10.9.0.1")
    known, unknown = [], []
    for i in range(15):
        for name, out in (("sales", known), (f"ghost{i}", unknown)):
            t0 = time.perf_counter()
            assert login(erp, name, "definitely wrong", f"10.9.{len(out) + 1}.{i + 2}").status_code == 401
            out.append(time.perf_counter() - t0)
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 1 / 1.5 < ratio < 1.5, (ratio, statistics.median(known), statistics.median(unknown))


@pytest.mark.postgres
def test_parallel_guesses_on_postgresql_never_exceed_the_allowance(request, tmp_path):
    """40 threads post wrong passwords at once to a real waitress server on PostgreSQL: at most 5 (the
    free failures of one account from one address) are checked, plus one for each back-off that ran out
    before the last answer; every other answer is a 429."""
    erp = Erp(fresh_database_url("postgres", request, tmp_path), "postgres")
    server = Server(erp.app, port=0, threads=16).start()
    try:
        barrier = threading.Barrier(40)
        statuses: list[int] = []

        def guess(i):
            barrier.wait()
            r = requests.post(server.url + "/api/v1/auth/login", timeout=120,
                              json={"username": "admin", "password": f"parallel guess {i}"})
            statuses.append(r.status_code)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        with erp.db.session(write=False) as s:
            checked = s.scalars(select(AuditLog).where(AuditLog.action == "login_failed")).all()
            pair = s.scalar(select(LoginThrottle.failures).where(LoginThrottle.key.like("p:admin%")))
        # without the row lock, the first wave alone checked 20 of 40; with it: 5, plus one per back-off
        # that ran out while a loaded machine was still answering (none when it answers within 2 s)
        assert sorted(set(statuses)) == [401, 429] and statuses.count(401) <= allowance(5, elapsed), \
            (statuses, elapsed)
        assert len(checked) == statuses.count(401) == pair
        # the real user from another address is not held back
        assert login(erp, "admin", PASSWORD, "198.51.100.77").status_code == 200
    finally:
        server.stop()
        erp.close()
