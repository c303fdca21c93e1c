package netconf

import (
	"bytes"
	"regexp"
	"time"

	"github.com/spiagent/spiagent/store"
	"github.com/spiagent/spiagent/ytree"
)

// Notifications (RFC 5277): the NETCONF stream carries RFC 6470's
// netconf-config-change for every commit to running, whoever made it (gNMI
// Set, NETCONF, a rollback). No replay: startTime and stopTime are refused.
// The model defines no YANG notifications of its own, so SA and invalid-SPI
// events are not sent here (gNMI Subscribe streams them).

const (
	notifNS          = "urn:ietf:params:xml:ns:netconf:notification:1.0"
	ncNotifNS        = "urn:ietf:params:xml:ns:yang:ietf-netconf-notifications"
	capNotification  = "urn:ietf:params:netconf:capability:notification:1.0"
	capInterleave    = "urn:ietf:params:netconf:capability:interleave:1.0"
	capNcNotifModule = ncNotifNS + "?module=ietf-netconf-notifications&revision=2012-02-06"

	// notifyQueue is how many commits a subscriber may fall behind before
	// its subscription ends.
	notifyQueue = 256
	// maxEdits bounds the edits listed in one notification.
	maxEdits = 1000
)

var sessionInComment = regexp.MustCompile(`^netconf .*\(session (\d+)\)$`)

func (ss *session) createSubscription(op *elem) rpcErrors {
	for _, k := range op.Kids {
		if k.Name.Space != notifNS {
			return rpcErrors{newErr("protocol", "unknown-element", "unexpected element <%s> in create-subscription", ytree.Clip(k.Name.Local)).info("bad-element", k.Name.Local)}
		}
		switch k.Name.Local {
		case "stream":
			if k.text() != "NETCONF" {
				return rpcErrors{newErr("protocol", "invalid-value", "no stream %q (only NETCONF)", ytree.Clip(k.text())).info("bad-element", "stream")}
			}
		case "startTime", "stopTime":
			return rpcErrors{newErr("protocol", "operation-not-supported", "replay is not supported: %s cannot be given", k.Name.Local).info("bad-element", k.Name.Local)}
		case "filter":
			return rpcErrors{newErr("protocol", "operation-not-supported", "notification filters are not supported").info("bad-element", "filter")}
		default:
			return rpcErrors{newErr("protocol", "unknown-element", "unexpected element <%s> in create-subscription", ytree.Clip(k.Name.Local)).info("bad-element", k.Name.Local)}
		}
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.unsubscribe != nil {
		return rpcErrors{newErr("protocol", "operation-failed", "this session already has a subscription")}
	}
	ch, cancel := ss.srv.cfg.Store.Subscribe(notifyQueue)
	ss.unsubscribe = cancel
	go ss.notify(ch)
	ss.log.Info("NETCONF subscription", "stream", "NETCONF")
	return nil
}

// notify sends a notification per commit until the subscription ends.
func (ss *session) notify(ch <-chan store.Event) {
	for ev := range ch {
		if err := ss.send(configChange(ev)); err != nil {
			return
		}
	}
	ss.wmu.Lock()
	ended := ss.ended
	ss.wmu.Unlock()
	if !ended {
		ss.log.Warn("NETCONF subscription ended: the session fell behind the commits")
	}
}

// send writes one message; replies and notifications interleave whole.
func (ss *session) send(msg []byte) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	return ss.fr.write(msg)
}

// configChange renders a netconf-config-change notification (RFC 6470).
func configChange(ev store.Event) []byte {
	var b bytes.Buffer
	b.WriteString(`<notification xmlns="` + notifNS + `"><eventTime>`)
	b.WriteString(ev.Info.Time.UTC().Format(time.RFC3339Nano))
	b.WriteString(`</eventTime><netconf-config-change xmlns="` + ncNotifNS + `"><changed-by>`)
	sid := "0"
	if m := sessionInComment.FindStringSubmatch(ev.Info.Comment); m != nil {
		sid = m[1]
	}
	if ev.Info.User == "" {
		b.WriteString("<server/>")
	} else {
		b.WriteString("<username>")
		escape(&b, ev.Info.User)
		b.WriteString("</username><session-id>" + sid + "</session-id>")
	}
	b.WriteString("</changed-by><datastore>running</datastore>")
	for i, c := range ev.Diff {
		if i == maxEdits {
			break
		}
		op := "replace"
		switch c.Kind {
		case store.Added:
			op = "create"
		case store.Removed:
			op = "delete"
		}
		b.WriteString(`<edit><target xmlns:` + xpathPrefix + `="` + moduleNamespaces[cryptoModule] + `">`)
		escape(&b, xpathOf(ytree.PathString(c.Path.GetElem())))
		b.WriteString("</target><operation>" + op + "</operation></edit>")
	}
	b.WriteString("</netconf-config-change></notification>")
	return b.Bytes()
}
