package alg

import (
	"fmt"
	"io"
	"log/slog"
)

// Key is secret key material: an IPsec SA's cipher or integrity key, or an
// IKE pre-shared key. It never prints its bytes: String, GoString, Format
// (every fmt verb and flag), LogValue (every slog handler), MarshalText and
// MarshalJSON all give "<redacted>", also when the Key is a field deep in
// a struct that is printed or logged whole. Errors name a key's length,
// never its bytes.
type Key []byte

const redacted = "<redacted>"

func (Key) String() string               { return redacted }
func (Key) GoString() string             { return redacted }
func (Key) Format(f fmt.State, _ rune)   { io.WriteString(f, redacted) }
func (Key) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (Key) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Clone returns a copy of k that the caller owns (nil for an empty key).
func (k Key) Clone() Key {
	if len(k) == 0 {
		return nil
	}
	return append(Key(nil), k...)
}
