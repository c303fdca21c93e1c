#!/usr/bin/python3
"""Drives spiagent's NETCONF server with Debian's python3-ncclient.

Usage: ncclient_check.py HOST PORT USER PASSWORD
Run by TestNcclient (ncclient_test.go). Exits non-zero on the first failed
check; prints one line per passed check. For each framing (base:1.1, the
ncclient default, and base:1.0 through a device handler that only offers
1.0) it adds a transform set "ts-py-<base>" through the candidate and
commits it: the Go test then checks the store and gNMI Get.
"""
import sys
import threading

from ncclient import manager
from ncclient.devices.default import DefaultDeviceHandler
from ncclient.operations import RPCError
from ncclient.transport.session import NetconfBase, SessionListener

NS = "urn:spiagent:yang:spiagent-crypto"
BASE = "urn:ietf:params:xml:ns:netconf:base:1.0"
MODULE_CAP = "urn:spiagent:yang:spiagent-crypto?module=spiagent-crypto&revision=2026-11-27"

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


class Base10Handler(DefaultDeviceHandler):
    """A client that speaks base:1.0 only (end-of-message framing)."""

    def get_capabilities(self):
        return [c for c in super().get_capabilities() if c != "urn:ietf:params:netconf:base:1.1"]


def connect(base):
    params = {"name": "default"} if base == "1.1" else {"handler": Base10Handler}
    return manager.connect(host=HOST, port=PORT, username=USER, password=PASSWORD,
                           hostkey_verify=False, look_for_keys=False, allow_agent=False,
                           device_params=params, timeout=20)


def check(cond, what):
    if not cond:
        print("FAIL: " + what, flush=True)
        sys.exit(1)
    print("ok: " + what, flush=True)


def expect_error(fn, tag, what, path_part=None):
    try:
        fn()
    except RPCError as e:
        check(e.tag == tag, "%s: error-tag %s (got %s: %s)" % (what, tag, e.tag, e.message))
        if path_part is not None:
            check(path_part in (e.path or ""), "%s: error-path has %s (got %r)" % (what, path_part, e.path))
        return e
    check(False, what + ": expected an rpc-error " + tag)


class Capture(SessionListener):
    """Catches the reply to a raw message by its message-id."""

    def __init__(self, msg_id):
        self.msg_id, self.raw, self.event = msg_id, None, threading.Event()

    def callback(self, root, raw):
        tag, attrs = root
        if tag.endswith("rpc-reply") and attrs.get("message-id") == self.msg_id:
            self.raw = raw
            self.event.set()

    def errback(self, ex):
        pass


def ts_config(name):
    return ('<config xmlns="%s"><crypto xmlns="%s"><transform-sets><transform-set><name>%s</name>'
            '<config><name>%s</name><esp-encryption>esp-aes</esp-encryption><esp-integrity>esp-sha256-hmac</esp-integrity>'
            '</config></transform-set></transform-sets></crypto></config>') % (BASE, NS, name, name)


def run(base):
    m = connect(base)
    check(m.session_id and int(m.session_id) > 0, base + ": session-id " + str(m.session_id))
    caps = list(m.server_capabilities)
    for c in ["urn:ietf:params:netconf:base:1.0", "urn:ietf:params:netconf:base:1.1",
              "urn:ietf:params:netconf:capability:candidate:1.0",
              "urn:ietf:params:netconf:capability:validate:1.1",
              "urn:ietf:params:netconf:capability:rollback-on-error:1.0",
              "urn:ietf:params:netconf:capability:writable-running:1.0", MODULE_CAP]:
        check(c in caps, base + ": capability " + c)
    want = NetconfBase.BASE_11 if base == "1.1" else NetconfBase.BASE_10
    check(m._session._base == want, base + ": negotiated framing base:" + base)

    running = m.get_config(source="running").data_xml
    check("<redacted>" in running.replace("&lt;", "<").replace("&gt;", ">"), base + ": pre-shared key redacted")
    check("auth2" in running, base + ": get-config running has transform set auth2")

    filt = '<crypto xmlns="%s"><isakmp><policies><policy><priority>1</priority></policy></policies></isakmp></crypto>' % NS
    sub = m.get_config(source="running", filter=("subtree", filt)).data_xml
    check("<priority>1</priority>" in sub and "transform-sets" not in sub, base + ": subtree filter with a key content match")

    xp = m.get_config(source="running", filter=("xpath", "/crypto/isakmp/policies/policy[priority='1']/config/lifetime")).data_xml
    check("<lifetime>" in xp and "<priority>1</priority>" in xp and "transform-sets" not in xp and "authentication" not in xp,
          base + ": xpath filter (simple location path with a key predicate)")

    name = "ts-py-" + base
    watcher = connect(base)
    watcher.create_subscription()
    m.edit_config(target="candidate", config=ts_config(name))
    cand = m.get_config(source="candidate").data_xml
    check(name in cand, base + ": edit-config into the candidate")
    check(name not in m.get_config(source="running").data_xml, base + ": running untouched before commit")
    m.validate(source="candidate")
    check(True, base + ": validate candidate")
    m.commit()
    check(name in m.get_config(source="running").data_xml, base + ": commit reached running")
    n = watcher.take_notification(timeout=10)
    check(n is not None and "netconf-config-change" in n.notification_xml and name in n.notification_xml
          and "<session-id>%s</session-id>" % m.session_id in n.notification_xml,
          base + ": netconf-config-change notification for the commit")
    watcher.close_session()

    # A lock held by one session blocks another's edit.
    m2 = connect(base)
    m.lock(target="candidate")
    e = expect_error(lambda: m2.edit_config(target="candidate", config=ts_config("ts-blocked")), "in-use", base + ": edit under another session's lock")
    holder = "<session-id>%s</session-id>" % m.session_id
    check(holder in str(e.info), base + ": in-use names the lock holder (%s)" % e.info)
    e = expect_error(lambda: m2.lock(target="candidate"), "lock-denied", base + ": second lock")
    check(holder in str(e.info), base + ": lock-denied names the lock holder (%s)" % e.info)
    m.unlock(target="candidate")
    m2.lock(target="candidate")
    m2.unlock(target="candidate")
    check(True, base + ": lock free after unlock")
    m2.close_session()

    # Unknown element and bad value.
    bogus = '<config xmlns="%s"><crypto xmlns="%s"><isakmp><bogus>1</bogus></isakmp></crypto></config>' % (BASE, NS)
    e = expect_error(lambda: m.edit_config(target="candidate", config=bogus), "unknown-element", base + ": unknown element", "spc:bogus")
    check(e.type == "application", base + ": unknown element error-type application")
    bad = ('<config xmlns="%s"><crypto xmlns="%s"><isakmp><policies><policy><priority>1</priority>'
           '<config><lifetime>abc</lifetime></config></policy></policies></isakmp></crypto></config>') % (BASE, NS)
    expect_error(lambda: m.edit_config(target="candidate", config=bad), "invalid-value", base + ": bad value", "spc:lifetime")

    # Malformed XML, sent raw on a fresh session (ncclient's own reply
    # listener, installed by the first RPC, rejects unknown message-ids):
    # the reply is an rpc-error carrying our message-id.
    m3 = connect(base)
    cap = Capture("bad-xml-1")
    m3._session.add_listener(cap)
    m3._session.send('<rpc message-id="bad-xml-1" xmlns="%s"><get-config><source><running/></source></get-config' % BASE)
    check(cap.event.wait(10), base + ": reply to malformed XML")
    want_tag = "malformed-message" if base == "1.1" else "operation-failed"
    check("<error-tag>%s</error-tag>" % want_tag in cap.raw and "<error-type>rpc</error-type>" in cap.raw, base + ": malformed XML gets rpc/" + want_tag)
    m3._session.remove_listener(cap)
    # The session still works.
    check("auth2" in m3.get_config(source="running").data_xml, base + ": session usable after malformed XML")
    m3.close_session()
    m.close_session()


for b in ["1.1", "1.0"]:
    run(b)
print("ALL OK", flush=True)
