package netconf

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestChunkedFraming(t *testing.T) {
	for _, tc := range []struct {
		desc, in string
		want     []string
		wantErr  error
	}{
		{desc: "RFC 6242 example", in: "\n#4\n<rpc\n#18\n message-id=\"102\"\n\n#79\n     xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\n  <close-session/>\n</rpc>\n##\n",
			want: []string{"<rpc message-id=\"102\"\n     xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">\n  <close-session/>\n</rpc>"}},
		{desc: "two messages", in: "\n#1\na\n##\n\n#2\nbc\n##\n", want: []string{"a", "bc"}},
		{desc: "leading zero", in: "\n#01\na\n##\n", wantErr: errFraming},
		{desc: "zero size", in: "\n#0\n\n##\n", wantErr: errFraming},
		{desc: "too many digits", in: "\n#12345678901\n", wantErr: errFraming},
		{desc: "over 2^32-1", in: "\n#4294967296\n", wantErr: errFraming},
		{desc: "end first", in: "\n##\n", wantErr: errFraming},
		{desc: "no LF", in: "#1\na\n##\n", wantErr: errFraming},
		{desc: "truncated", in: "\n#5\nab", wantErr: io.ErrUnexpectedEOF},
		{desc: "too large", in: "\n#300\n", wantErr: ErrTooLarge},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewBufferString(tc.in))
			var got []string
			var err error
			for {
				var m []byte
				m, err = readChunked(r, 256)
				if err != nil {
					break
				}
				got = append(got, string(m))
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != io.EOF {
				t.Fatalf("err = %v, want EOF", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("message %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestEOMFraming(t *testing.T) {
	r := bufio.NewReader(bytes.NewBufferString("<a/>]]>]]>\n<b>x]]></b>]]>]]>"))
	for _, want := range []string{"<a/>", "<b>x]]></b>"} {
		m, err := readEOM(r, 1024)
		if err != nil || string(m) != want {
			t.Fatalf("readEOM = %q, %v; want %q", m, err, want)
		}
	}
	if _, err := readEOM(r, 1024); err != io.EOF {
		t.Fatalf("at end: %v, want EOF", err)
	}
	if _, err := readEOM(bufio.NewReader(bytes.NewBufferString("<a>partial")), 1024); err != io.ErrUnexpectedEOF {
		t.Fatalf("partial: %v", err)
	}
	if _, err := readEOM(bufio.NewReader(bytes.NewBufferString("<aaaaaaaaaaaaaaaaaaaaaaaaaa/>]]>]]>")), 8); err != ErrTooLarge {
		t.Fatalf("large: %v", err)
	}
}

// FuzzFraming feeds network input to both decoders: they must not panic,
// must respect the size limit, and a decoded message must survive a
// re-encode/decode round trip.
func FuzzFraming(f *testing.F) {
	f.Add([]byte("\n#4\n<rpc\n##\n"))
	f.Add([]byte("<hello/>]]>]]>"))
	f.Add([]byte("\n#1\na\n#2\nbc\n##\n\n#1\nd\n##\n"))
	f.Add([]byte("\n#4294967295\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 4096
		r := bufio.NewReader(bytes.NewReader(in))
		for i := 0; i < 16; i++ {
			m, err := readChunked(r, max)
			if err != nil {
				break
			}
			if len(m) > max || len(m) == 0 {
				t.Fatalf("message of %d bytes", len(m))
			}
			back, err := readChunked(bufio.NewReader(bytes.NewReader(appendChunked(nil, m))), max)
			if err != nil || !bytes.Equal(back, m) {
				t.Fatalf("round trip: %q, %v; want %q", back, err, m)
			}
		}
		r = bufio.NewReader(bytes.NewReader(in))
		for i := 0; i < 16; i++ {
			m, err := readEOM(r, max)
			if err != nil {
				break
			}
			if len(m) > max || bytes.Contains(m, []byte(endOfMessage)) {
				t.Fatalf("bad message %q", m)
			}
		}
	})
}
