package netconf

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/spiagent/spiagent/agent/auth"
	"github.com/spiagent/spiagent/ytree"
)

// Capabilities.
const (
	capBase10          = "urn:ietf:params:netconf:base:1.0"
	capBase11          = "urn:ietf:params:netconf:base:1.1"
	capWritableRunning = "urn:ietf:params:netconf:capability:writable-running:1.0"
	capCandidate       = "urn:ietf:params:netconf:capability:candidate:1.0"
	capValidate10      = "urn:ietf:params:netconf:capability:validate:1.0"
	capValidate11      = "urn:ietf:params:netconf:capability:validate:1.1"
	capRollback        = "urn:ietf:params:netconf:capability:rollback-on-error:1.0"
)

// Capabilities is what the server's hello advertises.
func Capabilities() []string {
	return []string{
		capBase10, capBase11, capWritableRunning, capCandidate, capConfirmed10, capConfirmed11, capValidate10, capValidate11, capRollback, capXPath,
		capNotification, capInterleave, capNcNotifModule,
		moduleNamespaces[cryptoModule] + "?module=" + cryptoModule + "&revision=" + cryptoRevision,
		"urn:spiagent:yang:spiagent-types?module=spiagent-types&revision=" + cryptoRevision,
	}
}

// session is one NETCONF session.
type session struct {
	srv  *Server
	ctx  context.Context
	id   uint32
	user string
	role auth.Role
	ch   ssh.Channel
	fr   *framer
	log  interface {
		Info(string, ...any)
		Warn(string, ...any)
		Debug(string, ...any)
	}

	closeOnce sync.Once
	closing   bool // close-session answered
	overLimit bool // ended because a message went over a limit

	wmu         sync.Mutex // writes (replies and notifications); unsubscribe
	unsubscribe func()     // ends the notification subscription, if any
	ended       bool       // the session is over
}

func (s *Server) newSession(ctx context.Context, ch ssh.Channel, user string, role auth.Role) *session {
	id := s.nextID.Add(1)
	ss := &session{srv: s, ctx: ctx, id: id, user: user, role: role, ch: ch, fr: newFramer(ch, ch, s.cfg.MaxMessage)}
	ss.fr.in.budget = s.budget
	ss.log = s.log.With("session", id, "user", user)
	s.mu.Lock()
	s.sessions[id] = ss
	s.mu.Unlock()
	return ss
}

// close ends the session's transport (idempotent); run cleans up.
func (ss *session) close() {
	ss.closeOnce.Do(func() { ss.ch.Close() })
}

// run exchanges hellos and serves RPCs until the session ends.
func (ss *session) run() {
	defer ss.srv.endSession(ss)
	defer func() {
		// After close: a notification write in progress fails and lets go.
		ss.wmu.Lock()
		ss.ended = true
		if ss.unsubscribe != nil {
			ss.unsubscribe()
		}
		ss.wmu.Unlock()
	}()
	defer ss.close()
	defer ss.fr.release()
	// Removing the user, or its role, from the users file ends the session.
	defer ss.srv.cfg.Users.Track(ss.user, ss.role, ss.revoke)()
	idle := time.AfterFunc(ss.srv.cfg.IdleTimeout, func() {
		ss.log.Info("NETCONF session idle: closing", "idle_timeout", ss.srv.cfg.IdleTimeout)
		ss.close()
	})
	defer idle.Stop()
	ss.log.Info("NETCONF session start", "role", ss.role)
	if err := ss.fr.write(ss.helloMsg()); err != nil {
		return
	}
	msg, err := ss.fr.read()
	if err != nil {
		ss.log.Debug("NETCONF session ended before hello", "err", err)
		return
	}
	if err := ss.clientHello(msg); err != nil {
		ss.log.Warn("NETCONF bad client hello: closing", "err", err)
		return
	}
	for {
		msg, err := ss.fr.read()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				ss.log.Info("NETCONF session read failed: closing", "err", err)
				ss.overLimit = errors.Is(err, ErrTooLarge) || errors.Is(err, ErrBudget)
				switch {
				case errors.Is(err, ErrTooLarge):
					_ = ss.send(replyXML(nil, nil, rpcErrors{newErr("rpc", "too-big", "message over %d bytes", ss.srv.cfg.MaxMessage)}))
				case errors.Is(err, ErrBudget):
					ss.srv.rl.Warn("NETCONF session ended: message memory of all sessions in use", "user", ss.user, "max_buffered", ss.srv.cfg.MaxBuffered)
					_ = ss.send(replyXML(nil, nil, rpcErrors{newErr("rpc", "resource-denied",
						"the server's memory for incoming messages (%d MiB across all sessions) is in use: message refused, session closed", ss.srv.cfg.MaxBuffered>>20)}))
				}
			}
			ss.log.Info("NETCONF session end")
			return
		}
		idle.Reset(ss.srv.cfg.IdleTimeout)
		reply := ss.handle(msg)
		if err := ss.send(reply); err != nil {
			return
		}
		if ss.closing {
			ss.log.Info("NETCONF session closed by client")
			return
		}
		idle.Reset(ss.srv.cfg.IdleTimeout)
	}
}

// revokeGrace bounds how long the notice of a revoked session may wait for
// a client that does not read.
const revokeGrace = 5 * time.Second

// revoke ends the session because its user was removed from the users file
// or lost its role: an rpc-error (access-denied) says why, then the session
// closes. It does not block (the users file's reader calls it).
func (ss *session) revoke(e *auth.RevokedError) {
	ss.log.Warn("NETCONF session ended: user revoked", "reason", e.Error())
	go func() {
		t := time.AfterFunc(revokeGrace, ss.close)
		defer t.Stop()
		_ = ss.send(replyXML(nil, nil, rpcErrors{newErr("protocol", "access-denied", "%s", e.Error())}))
		ss.close()
	}()
}

func (ss *session) helloMsg() []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><hello xmlns="` + baseNS + `"><capabilities>`)
	for _, c := range Capabilities() {
		b.WriteString("<capability>")
		escape(&b, c)
		b.WriteString("</capability>")
	}
	b.WriteString("</capabilities><session-id>" + strconv.FormatUint(uint64(ss.id), 10) + "</session-id></hello>")
	return b.Bytes()
}

// clientHello checks the client's hello and picks the framing: chunked
// when both sides speak base:1.1.
func (ss *session) clientHello(msg []byte) error {
	x, err := parseRPC(msg)
	if err != nil {
		return err
	}
	if x.Name.Local != "hello" || x.Name.Space != baseNS {
		return errors.New("first message is not a hello")
	}
	if x.kid(baseNS, "session-id") != nil {
		return errors.New("client hello carries a session-id")
	}
	caps := x.kid(baseNS, "capabilities")
	if caps == nil {
		return errors.New("client hello without capabilities")
	}
	var b10, b11 bool
	for _, c := range caps.Kids {
		switch c.text() {
		case capBase10:
			b10 = true
		case capBase11:
			b11 = true
		}
	}
	if !b10 && !b11 {
		return errors.New("client speaks neither base:1.0 nor base:1.1")
	}
	ss.fr.chunked = b11
	ss.log.Debug("NETCONF hello", "base11", b11)
	return nil
}

var messageIDRe = regexp.MustCompile(`<(?:[A-Za-z_][\w.-]*:)?rpc\s[^>]*?message-id\s*=\s*["']([^"'<>&]*)["']`)

// handle answers one message.
func (ss *session) handle(msg []byte) []byte {
	x, err := parseRPC(msg)
	if err != nil {
		// Echo the message-id if the start tag is readable, so that the
		// client can match the error to its request.
		var attrs [][2]string
		if m := messageIDRe.FindSubmatch(msg); m != nil {
			attrs = [][2]string{{"message-id", string(m[1])}}
		}
		if errors.Is(err, errTooBig) {
			return replyXML(attrs, nil, rpcErrors{newErr("rpc", "too-big", "%v (%d bytes received)", err, len(msg))})
		}
		tag := "malformed-message"
		if !ss.fr.chunked {
			tag = "operation-failed" // malformed-message is base:1.1 only
		}
		return replyXML(attrs, nil, rpcErrors{newErr("rpc", tag, "malformed XML: %s", clipMsg(err.Error()))})
	}
	if x.Name.Local != "rpc" || x.Name.Space != baseNS {
		return replyXML(nil, nil, rpcErrors{newErr("rpc", "unknown-element", "expected <rpc> in namespace %s, got <%s> in %q", baseNS, ytree.Clip(x.Name.Local), ytree.Clip(x.Name.Space)).info("bad-element", x.Name.Local)})
	}
	var attrs [][2]string
	hasID := false
	for _, a := range x.Attr {
		if a.Name.Space == "" && a.Name.Local != "xmlns" {
			attrs = append(attrs, [2]string{a.Name.Local, a.Value})
			hasID = hasID || a.Name.Local == "message-id"
		}
	}
	if !hasID {
		return replyXML(attrs, nil, rpcErrors{newErr("rpc", "missing-attribute", "<rpc> without a message-id").info("bad-attribute", "message-id").info("bad-element", "rpc")})
	}
	if len(x.Kids) != 1 {
		return replyXML(attrs, nil, rpcErrors{newErr("rpc", "missing-element", "<rpc> must hold exactly one operation").info("bad-element", "rpc")})
	}
	start := time.Now()
	body, errs := ss.dispatch(x.Kids[0])
	ss.log.Debug("NETCONF rpc", "op", x.Kids[0].Name.Local, "errors", len(errs), "took", time.Since(start))
	return replyXML(attrs, body, errs)
}

// replyXML renders an <rpc-reply>: the errors if any, else body (nil body:
// <ok/>).
func replyXML(attrs [][2]string, body []byte, errs rpcErrors) []byte {
	var b bytes.Buffer
	b.Grow(len(body) + 256)
	b.WriteString(`<rpc-reply xmlns="` + baseNS + `"`)
	for _, a := range attrs {
		b.WriteString(" " + a[0] + `="`)
		escape(&b, a[1])
		b.WriteByte('"')
	}
	b.WriteByte('>')
	switch {
	case len(errs) > 0:
		for _, e := range errs {
			e.write(&b)
		}
	case body == nil:
		b.WriteString("<ok/>")
	default:
		b.Write(body)
	}
	b.WriteString("</rpc-reply>")
	return b.Bytes()
}
