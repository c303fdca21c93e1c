package alg_test

import (
	"bytes"
	"context"
	"encoding"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiagent/spiagent/alg"
	"github.com/spiagent/spiagent/ike"
	"github.com/spiagent/spiagent/ipsec"
)

// The secrets below have bytes no other field of these structs has, so that
// finding one of their forms in an output can only be a leak.

func pattern(n int, first byte) alg.Key {
	k := make(alg.Key, n)
	for i := range k {
		k[i] = first + byte(i)
	}
	return k
}

var (
	cipherKey = pattern(32, 0xa0)                    // a0 a1 ... bf
	integKey  = pattern(32, 0xc0)                    // c0 c1 ... df
	gcmKey    = pattern(36, 0x60)                    // 60 61 ... 83: "`abc..."
	psk       = alg.Key("Tr0ub4dor&3-correct-horse") // printable: the raw form shows in %s
	secrets   = []alg.Key{cipherKey, integKey, gcmKey, psk}
)

// forms are the ways a key's bytes can appear in text: raw, hex (both
// cases), decimal (as fmt prints a byte slice), and base64 (as
// encoding/json prints one) at each of the three byte alignments. Each form
// is of a 12-byte window, so a partial leak is found too.
func forms(k alg.Key) map[string]string {
	w := []byte(k[:12])
	out := map[string]string{
		"raw":     string(w),
		"hex":     hex.EncodeToString(w),
		"HEX":     strings.ToUpper(hex.EncodeToString(w)),
		"decimal": strings.Trim(fmt.Sprint([]byte(w)), "[]"),
		"%q":      strings.Trim(fmt.Sprintf("%q", w), `"`),
	}
	for off := range 3 {
		b := base64.StdEncoding.EncodeToString(k[off : off+12])
		out[fmt.Sprintf("base64@%d", off)] = b[4 : len(b)-4] // drop chars that depend on neighbours
		u := base64.URLEncoding.EncodeToString(k[off : off+12])
		out[fmt.Sprintf("base64url@%d", off)] = u[4 : len(u)-4]
	}
	return out
}

func checkNoKey(t *testing.T, where, out string) {
	t.Helper()
	if !strings.Contains(out, "redacted") && !strings.Contains(out, "ERROR") { // JSON escapes the <>
		t.Errorf("%s: no <redacted> in %q: the value was not printed at all", where, out)
	}
	for _, k := range secrets {
		for form, s := range forms(k) {
			if strings.Contains(out, s) {
				t.Errorf("%s: key bytes (%s form %q) in %q", where, form, s, out)
			}
		}
	}
}

// The values under test, as the engines and the agent hold them.
func values() map[string]any {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	sa := ipsec.SA{
		Src: a, Dst: b, Proto: alg.ESP, SPI: 0x1234, Dir: ipsec.DirOut, Mode: alg.Tunnel,
		Cipher: alg.AES256, CipherKey: cipherKey, Integ: alg.HMACSHA256, IntegKey: integKey,
	}
	gcm := sa
	gcm.Cipher, gcm.CipherKey, gcm.Integ, gcm.IntegKey = alg.AESGCM256, gcmKey, alg.IntegNone, nil
	child := ike.ChildSA{
		ID: 1, Tag: "m/10@wan0#10", Local: a, Remote: b, Mode: alg.Tunnel, Lifetime: time.Hour,
		In: []ike.SA{
			{Proto: alg.AH, SPI: 0x1001, Integ: alg.HMACSHA256, IntegKey: integKey},
			{Proto: alg.ESP, SPI: 0x1002, Cipher: alg.AESGCM256, EncKey: gcmKey},
		},
		Out: []ike.SA{{Proto: alg.ESP, SPI: 0x2002, Cipher: alg.AES256, EncKey: cipherKey, Integ: alg.HMACSHA256, IntegKey: integKey}},
	}
	cfg := ike.Config{
		Policies: []ike.Policy{{Priority: 1, Cipher: alg.AES256, Hash: alg.SHA256, Group: alg.MODP2048}},
		Keys:     map[netip.Addr]alg.Key{b: psk, netip.IPv4Unspecified(): psk},
	}
	return map[string]any{
		"ipsec.SA":     sa,
		"*ipsec.SA":    &sa,
		"gcm ipsec.SA": gcm,
		"[]ipsec.SA":   []ipsec.SA{sa, gcm},
		"ike.ChildSA":  child,
		"*ike.ChildSA": &child,
		"ike.Output":   ike.Output{Install: []ike.ChildSA{child}},
		"ike.Config":   cfg,
		"*ike.Config":  &cfg,
		"config keys":  cfg.Keys,
		"ike.SA":       child.Out[0],
		"alg.Key":      cipherKey,
		"psk":          psk,
	}
}

// TestNoKeyInFmt prints every value with every verb (and flags) fmt has.
func TestNoKeyInFmt(t *testing.T) {
	for name, v := range values() {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "% x", "%#x", "%10.3v", "%-8s", "%08d"} {
			checkNoKey(t, name+" "+verb, fmt.Sprintf(verb, v))
		}
		checkNoKey(t, name+" Sprint", fmt.Sprint(v))
		checkNoKey(t, name+" Sprintln", fmt.Sprintln("x", v))
		checkNoKey(t, name+" Errorf", fmt.Errorf("wrapped: %v", v).Error())
	}
}

// TestNoKeyInEncoders covers encoders that a log pipeline or a debug
// endpoint may use on the value whole.
func TestNoKeyInEncoders(t *testing.T) {
	for name, v := range values() {
		b, err := json.Marshal(v)
		if err != nil {
			continue // ike.Config has a func field: json refuses it whole
		}
		checkNoKey(t, name+" json", string(b))
		b, _ = json.MarshalIndent(v, "", " ")
		checkNoKey(t, name+" json indent", string(b))
	}
	for _, k := range secrets {
		if tb, _ := k.MarshalText(); string(tb) != "<redacted>" {
			t.Errorf("MarshalText %q", tb)
		}
	}
}

// TestNoKeyInSlog logs every value through the standard text and JSON
// handlers and a handler that walks attributes by reflection, as attribute,
// group member, logger attribute (With) and message argument.
func TestNoKeyInSlog(t *testing.T) {
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text":    func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json":    func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		"walking": func(b *bytes.Buffer) slog.Handler { return &walkHandler{w: b} },
	}
	for hname, newH := range handlers {
		for name, v := range values() {
			var buf bytes.Buffer
			l := slog.New(newH(&buf))
			l.Info("attr", "v", v)
			l.LogAttrs(context.Background(), slog.LevelInfo, "any", slog.Any("v", v))
			l.Info("group", slog.Group("g", slog.Any("v", v), "sa", v))
			l.With("v", v).Info("with")
			l.WithGroup("wg").Info("in group", "v", v)
			l.Info(fmt.Sprintf("message %v", v))
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				checkNoKey(t, hname+" "+name, line)
			}
		}
	}
}

// walkHandler renders attributes by walking values with reflection, as
// structured-logging back ends do: it resolves LogValuers (at every depth)
// and TextMarshalers, descends into structs, slices, maps and pointers, and
// prints what is left with %v.
type walkHandler struct {
	w     *bytes.Buffer
	attrs []slog.Attr
}

func (h *walkHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *walkHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &walkHandler{w: h.w, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *walkHandler) WithGroup(string) slog.Handler { return h }

func (h *walkHandler) Handle(_ context.Context, r slog.Record) error {
	h.w.WriteString(r.Message)
	for _, a := range h.attrs {
		h.attr(a)
	}
	r.Attrs(func(a slog.Attr) bool { h.attr(a); return true })
	h.w.WriteString("\n")
	return nil
}

func (h *walkHandler) attr(a slog.Attr) {
	v := a.Value.Resolve()
	fmt.Fprintf(h.w, " %s=", a.Key)
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			h.attr(g)
		}
		return
	}
	if v.Kind() != slog.KindAny {
		h.w.WriteString(v.String())
		return
	}
	h.walk(reflect.ValueOf(v.Any()), 0)
}

func (h *walkHandler) walk(v reflect.Value, depth int) {
	if !v.IsValid() || depth > 10 {
		h.w.WriteString("<nil>")
		return
	}
	if v.CanInterface() {
		switch x := v.Interface().(type) {
		case slog.LogValuer:
			h.attr(slog.Any("", x.LogValue()))
			return
		case encoding.TextMarshaler:
			b, err := x.MarshalText()
			if err == nil {
				h.w.Write(b)
				return
			}
		}
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		h.walk(v.Elem(), depth+1)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fmt.Fprintf(h.w, " %s:", v.Type().Field(i).Name)
				h.walk(v.Field(i), depth+1)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			fmt.Fprintf(h.w, "%x", v.Bytes()) // an unredacted []byte would show here
			return
		}
		for i := range v.Len() {
			h.walk(v.Index(i), depth+1)
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			h.walk(it.Key(), depth+1)
			h.walk(it.Value(), depth+1)
		}
	default:
		if v.CanInterface() {
			fmt.Fprintf(h.w, "%v", v.Interface())
		}
	}
}

// TestRedactionTestCanFail shows that the checks above see a leak: the
// same walk over plain byte slices finds the key bytes.
func TestRedactionTestCanFail(t *testing.T) {
	var buf bytes.Buffer
	slog.New(&walkHandler{w: &buf}).Info("plain", "k", []byte(cipherKey))
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("plain", "k", []byte(gcmKey))
	fmt.Fprintf(&buf, "%d %s", []byte(integKey), []byte(psk))
	out := buf.String()
	for _, k := range secrets {
		found := false
		for _, s := range forms(k) {
			found = found || strings.Contains(out, s)
		}
		if !found {
			t.Errorf("key % x not found in an unredacted print %q", k[:4], out)
		}
	}
}
