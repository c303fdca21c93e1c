package gnmi

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	gpb "github.com/openconfig/gnmi/proto/gnmi"
	"github.com/openconfig/gnmi/proto/gnmi_ext"
	"github.com/openconfig/goyang/pkg/yang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/spiagent/spiagent/ytree"
)

// maxUpdatesPerNotification splits big initial syncs into several
// notifications.
const maxUpdatesPerNotification = 1000

// senderBuffer is how many responses a STREAM subscription may have waiting
// for gRPC flow control before it stops taking changes from its queue.
const senderBuffer = 8

// subscription is one path of a SubscriptionList.
type subscription struct {
	pattern   []*gpb.PathElem
	mode      gpb.SubscriptionMode
	sample    time.Duration
	suppress  bool
	heartbeat time.Duration
	last      map[string]lastLeaf // sampled leaves last sent
}

type lastLeaf struct {
	path []*gpb.PathElem
	val  *gpb.TypedValue
}

// session is one Subscribe RPC.
type session struct {
	s      *Server
	stream gpb.GNMI_SubscribeServer
	list   *gpb.SubscriptionList
	subs   []*subscription
	enc    gpb.Encoding
	target string
	sendFn func(*gpb.SubscribeResponse) error
	exts   []*gnmi_ext.Extension
}

// Subscribe serves ONCE, POLL and STREAM subscriptions.
func (s *Server) Subscribe(stream gpb.GNMI_SubscribeServer) error {
	req, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	list := req.GetSubscribe()
	if list == nil {
		return errStatus(codes.InvalidArgument, "the first SubscribeRequest must carry a SubscriptionList")
	}
	ss := &session{s: s, stream: stream, list: list, enc: list.GetEncoding(), target: list.GetPrefix().GetTarget(), exts: req.GetExtension()}
	ss.sendFn = stream.Send
	if err := ss.parse(); err != nil {
		return err
	}
	switch list.GetMode() {
	case gpb.SubscriptionList_ONCE:
		if err := ss.sendInitial(!list.GetUpdatesOnly()); err != nil {
			return err
		}
		return nil
	case gpb.SubscriptionList_POLL:
		return ss.poll()
	case gpb.SubscriptionList_STREAM:
		return ss.runStream()
	}
	return errStatus(codes.InvalidArgument, "unknown subscription mode %v", list.GetMode())
}

// parse validates the subscription list.
func (ss *session) parse() error {
	l := ss.list
	if err := checkEncoding(l.GetEncoding()); err != nil {
		return errStatus(codes.Unimplemented, "%v", err)
	}
	if len(l.GetSubscription()) == 0 {
		return errStatus(codes.InvalidArgument, "the subscription list has no subscriptions")
	}
	if err := checkModels(l.GetUseModels()); err != nil {
		return err
	}
	if err := checkReadExtensions(ss.exts); err != nil {
		return err
	}
	minI := ss.s.cfg.MinSampleInterval
	for _, sub := range l.GetSubscription() {
		shown := showPath(l.GetPrefix(), sub.GetPath())
		elems, err := fullPath(l.GetPrefix(), sub.GetPath())
		if err != nil {
			return errStatus(codes.InvalidArgument, "%v", err)
		}
		if _, err := ytree.Resolve(elems); err != nil {
			return errStatus(codes.InvalidArgument, "path %s: %v", shown, err)
		}
		x := &subscription{pattern: elems, mode: sub.GetMode(), suppress: sub.GetSuppressRedundant(),
			sample: time.Duration(sub.GetSampleInterval()), heartbeat: time.Duration(sub.GetHeartbeatInterval())}
		if _, ok := gpb.SubscriptionMode_name[int32(x.mode)]; !ok {
			return errStatus(codes.InvalidArgument, "path %s: unknown subscription mode %d", shown, x.mode)
		}
		if l.GetMode() == gpb.SubscriptionList_STREAM {
			if x.sample != 0 && x.sample < minI {
				return errStatus(codes.InvalidArgument, "path %s: sample_interval %v is below the minimum %v", shown, x.sample, minI)
			}
			if x.heartbeat != 0 && x.heartbeat < minI {
				return errStatus(codes.InvalidArgument, "path %s: heartbeat_interval %v is below the minimum %v", shown, x.heartbeat, minI)
			}
			if x.mode == gpb.SubscriptionMode_SAMPLE && x.sample == 0 {
				x.sample = ss.s.cfg.TargetSample
			}
			if x.mode == gpb.SubscriptionMode_TARGET_DEFINED {
				x.sample = ss.s.cfg.TargetSample
			}
		}
		ss.subs = append(ss.subs, x)
	}
	return nil
}

// isCounter reports whether a leaf is a counter or a countdown: sampled,
// not sent on every change, in TARGET_DEFINED mode.
func isCounter(e *yang.Entry) bool {
	if e == nil || !ytree.IsState(e) || ytree.MirrorsConfig(e) {
		return false
	}
	if strings.HasPrefix(e.Name, "lifetime-remaining") {
		return true
	}
	return e.Type != nil && e.Type.Kind == yang.Yuint64
}

// sendInitial sends every subscription's current leaves (if withData), then
// sync_response.
func (ss *session) sendInitial(withData bool) error {
	if withData {
		v := ss.s.view()
		ts := ss.s.now()
		for _, sub := range ss.subs {
			leaves, err := v.leaves(sub.pattern, gpb.GetRequest_ALL)
			if err != nil {
				return errStatus(codes.Internal, "%v", err)
			}
			var ups []*gpb.Update
			for _, l := range leaves {
				if sub.mode == gpb.SubscriptionMode_SAMPLE || (sub.mode == gpb.SubscriptionMode_TARGET_DEFINED && isCounter(l.Schema)) {
					sub.remember(ytree.PathString(l.Path), l.Path, l.Val)
				}
				u, err := ss.update(l.Path, l.Val, l.Schema)
				if err != nil {
					return err
				}
				ups = append(ups, u)
			}
			if err := ss.sendUpdates(ts, ups, nil); err != nil {
				return err
			}
		}
	}
	return ss.sendFn(&gpb.SubscribeResponse{Response: &gpb.SubscribeResponse_SyncResponse{SyncResponse: true}})
}

func (sub *subscription) remember(k string, p []*gpb.PathElem, v *gpb.TypedValue) {
	if sub.last == nil {
		sub.last = map[string]lastLeaf{}
	}
	sub.last[k] = lastLeaf{path: p, val: v}
}

// update encodes one leaf update, redacting secrets.
func (ss *session) update(p []*gpb.PathElem, v *gpb.TypedValue, e *yang.Entry) (*gpb.Update, error) {
	if ytree.IsSecret(e) {
		v = &gpb.TypedValue{Value: &gpb.TypedValue_StringVal{StringVal: "<redacted>"}}
	}
	val, err := encodeLeaf(v, e, ss.enc)
	if err != nil {
		return nil, errStatus(codes.Internal, "encode %s: %v", ytree.PathString(p), err)
	}
	return &gpb.Update{Path: &gpb.Path{Elem: p}, Val: val}, nil
}

// sendUpdates sends updates and deletes in notifications of bounded size.
func (ss *session) sendUpdates(ts int64, ups []*gpb.Update, dels []*gpb.Path) error {
	var prefix *gpb.Path
	if ss.target != "" {
		prefix = &gpb.Path{Target: ss.target}
	}
	for len(ups) > 0 || len(dels) > 0 {
		n := &gpb.Notification{Timestamp: ts, Prefix: prefix}
		k := min(len(dels), maxUpdatesPerNotification)
		n.Delete, dels = dels[:k], dels[k:]
		k = min(len(ups), maxUpdatesPerNotification-len(n.Delete))
		n.Update, ups = ups[:k], ups[k:]
		if err := ss.sendFn(&gpb.SubscribeResponse{Response: &gpb.SubscribeResponse_Update{Update: n}}); err != nil {
			return err
		}
	}
	return nil
}

// poll answers each Poll request with a full sync.
func (ss *session) poll() error {
	if err := ss.sendInitial(!ss.list.GetUpdatesOnly()); err != nil {
		return err
	}
	for {
		req, err := ss.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetPoll() == nil {
			return errStatus(codes.InvalidArgument, "a POLL subscription accepts only Poll requests")
		}
		if err := ss.sendInitial(true); err != nil {
			return err
		}
	}
}

// tick is a SAMPLE or heartbeat timer firing for one subscription.
type tick struct {
	sub       *subscription
	heartbeat bool
}

// runStream serves a STREAM subscription until the client goes away, the
// server stops, or the subscriber falls too far behind.
func (ss *session) runStream() error {
	ctx, cancel := context.WithCancelCause(ss.stream.Context())
	defer cancel(nil)

	// Responses go through a sender goroutine so that a client that stops
	// reading blocks only its own sender, never the hub.
	out := make(chan *gpb.SubscribeResponse, senderBuffer)
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		for r := range out {
			if err := ss.stream.Send(r); err != nil {
				cancel(err)
				return
			}
		}
	}()
	ss.sendFn = func(r *gpb.SubscribeResponse) error {
		select {
		case out <- r:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}

	var hs *hubSub
	if ss.wantsChanges() {
		hs = ss.s.hub.add(func(err error) { cancel(err) }, ss.s.cfg.SubscriberQueue)
		defer ss.s.hub.remove(hs)
	}
	err := ss.sendInitial(!ss.list.GetUpdatesOnly())
	if err == nil {
		err = ss.streamLoop(ctx, hs)
	}
	if err == nil {
		close(out)
		select {
		case <-sendDone:
		case <-ctx.Done():
		}
		return nil
	}
	return ss.endStatus(ctx, err)
}

// endStatus turns the reason a stream ended into its status.
func (ss *session) endStatus(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		err = cause
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "subscription cancelled")
	}
	return status.Error(codes.Unavailable, err.Error())
}

func (ss *session) wantsChanges() bool {
	for _, sub := range ss.subs {
		if sub.mode == gpb.SubscriptionMode_ON_CHANGE || sub.mode == gpb.SubscriptionMode_TARGET_DEFINED {
			return true
		}
	}
	return false
}

// streamLoop multiplexes queued changes, timers and the client's stream.
func (ss *session) streamLoop(ctx context.Context, hs *hubSub) error {
	var q <-chan *batch
	if hs != nil {
		q = hs.q
	}
	ticks := make(chan tick)
	for _, sub := range ss.subs {
		if sub.mode != gpb.SubscriptionMode_ON_CHANGE {
			go ticker(ctx, sub.sample, tick{sub: sub}, ticks)
		}
		if sub.heartbeat > 0 && sub.mode != gpb.SubscriptionMode_TARGET_DEFINED {
			go ticker(ctx, sub.heartbeat, tick{sub: sub, heartbeat: true}, ticks)
		}
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := ss.stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if req.GetPoll() != nil || req.GetSubscribe() != nil {
				recvErr <- errStatus(codes.InvalidArgument, "a STREAM subscription accepts no further requests")
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				// The client half-closed: keep streaming until it cancels.
				recvErr = nil
				continue
			}
			return err
		case b := <-q:
			hs.taken()
			if err := ss.onChange(b); err != nil {
				return err
			}
		case t := <-ticks:
			if err := ss.onTick(t); err != nil {
				return err
			}
		}
	}
}

func ticker(ctx context.Context, d time.Duration, t tick, out chan<- tick) {
	tk := time.NewTicker(d)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			select {
			case out <- t:
			case <-ctx.Done():
				return
			}
		}
	}
}

// onChange sends the part of a change batch the ON_CHANGE (and
// TARGET_DEFINED, counters excepted) subscriptions select.
func (ss *session) onChange(b *batch) error {
	var ups []*gpb.Update
	var dels []*gpb.Path
	for _, sub := range ss.subs {
		if sub.mode != gpb.SubscriptionMode_ON_CHANGE && sub.mode != gpb.SubscriptionMode_TARGET_DEFINED {
			continue
		}
		for _, c := range b.changes {
			if c.val == nil {
				if ytree.Overlaps(sub.pattern, c.path) {
					dels = append(dels, &gpb.Path{Elem: c.path})
				}
				continue
			}
			if !ytree.Covers(sub.pattern, c.path) {
				continue
			}
			if sub.mode == gpb.SubscriptionMode_TARGET_DEFINED && isCounter(c.schema) {
				continue
			}
			u, err := ss.update(c.path, c.val, c.schema)
			if err != nil {
				return err
			}
			ups = append(ups, u)
		}
	}
	return ss.sendUpdates(b.ts, ups, dels)
}

// onTick samples a subscription: every leaf, or with suppress_redundant
// only the changed ones (all of them at each heartbeat); leaves that went
// away since the last sample are sent as deletes.
func (ss *session) onTick(t tick) error {
	sub := t.sub
	leaves, err := ss.s.view().leaves(sub.pattern, gpb.GetRequest_ALL)
	if err != nil {
		return errStatus(codes.Internal, "%v", err)
	}
	sampled := sub.mode != gpb.SubscriptionMode_ON_CHANGE
	countersOnly := sub.mode == gpb.SubscriptionMode_TARGET_DEFINED
	suppress := sub.suppress || countersOnly
	var ups []*gpb.Update
	seen := make(map[string]bool, len(leaves))
	for _, l := range leaves {
		if countersOnly && !isCounter(l.Schema) {
			continue
		}
		k := ytree.PathString(l.Path)
		seen[k] = true
		if sampled {
			prev, had := sub.last[k]
			sub.remember(k, l.Path, l.Val)
			if suppress && !t.heartbeat && had && proto.Equal(prev.val, l.Val) {
				continue
			}
		}
		u, err := ss.update(l.Path, l.Val, l.Schema)
		if err != nil {
			return err
		}
		ups = append(ups, u)
	}
	var dels []*gpb.Path
	if sampled {
		for k, l := range sub.last {
			if !seen[k] {
				delete(sub.last, k)
				dels = append(dels, &gpb.Path{Elem: l.path})
			}
		}
	}
	return ss.sendUpdates(ss.s.now(), ups, dels)
}
