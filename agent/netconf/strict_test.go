package netconf

import (
	"strings"
	"testing"
)

// policyEdit edits ISAKMP policy 1's config in running.
func policyEdit(inner string) string {
	return `<edit-config><target><running/></target><config><crypto xmlns="` + cryptoNS + `"><isakmp><policies><policy><priority>1</priority><config>` + inner + `</config></policy></policies></isakmp></crypto></config></edit-config>`
}

// keyEditRunning sets 192.0.2.2's pre-shared key in running to raw XML
// text.
func keyEditRunning(text string) string {
	return `<edit-config><target><running/></target><config><crypto xmlns="` + cryptoNS + `"><isakmp><keys><key><address>192.0.2.2</address><config><key>` + text + `</key></config></key></keys></isakmp></crypto></config></edit-config>`
}

// TestStrictInput: what the XML decoder refuses, and what its errors echo.
func TestStrictInput(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(rwUser, rwPass, true)
	before := e.st.Running().ID
	unchanged := func(what string) {
		t.Helper()
		if e.st.Running().ID != before {
			t.Fatalf("%s changed running", what)
		}
	}
	t.Run("duplicates", func(t *testing.T) {
		for _, tc := range []struct{ desc, cfg, path string }{
			{"leaf", policyEdit(`<lifetime>600</lifetime><lifetime>700</lifetime>`), "spc:config/spc:lifetime"},
			{"same value twice", policyEdit(`<lifetime>600</lifetime><lifetime>600</lifetime>`), "spc:lifetime"},
			{"container", policyEdit(`<lifetime>600</lifetime></config><config><hash>sha</hash>`), "spc:policy[spc:priority='1']/spc:config"},
			{"list entry", `<edit-config><target><running/></target><config><crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set><name>a</name></transform-set><transform-set><name>a</name></transform-set></transform-sets></crypto></config></edit-config>`, "spc:transform-set[spc:name='a']"},
			{"leaf-list value", `<edit-config><target><running/></target><config><crypto xmlns="` + cryptoNS + `"><crypto-maps><crypto-map><name>testtag1</name><entries><entry><sequence>10</sequence><config><peer>192.0.2.9</peer><peer>192.0.2.9</peer></config></entry></entries></crypto-map></crypto-maps></crypto></config></edit-config>`, "spc:peer"},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				m := wantErr(t, c.rpc(tc.cfg), "application", "bad-element", tc.path)
				if !strings.Contains(m["error-message"], "given twice") {
					t.Errorf("message %q", m["error-message"])
				}
				unchanged(tc.desc)
			})
		}
	})
	t.Run("integers", func(t *testing.T) {
		for _, tc := range []struct{ text, want string }{
			{"100.9", `"100.9" is not a uint32`},
			{"18446744073709551616", `out of range 0..4294967295`},
			{"4294967296", `out of range 0..4294967295`},
			{"-1", `out of range 0..4294967295`},
			{"59", `outside specified ranges (allowed 60..86400)`},
		} {
			m := wantErr(t, c.rpc(policyEdit(`<lifetime>`+tc.text+`</lifetime>`)), "application", "invalid-value", "spc:lifetime")
			if !strings.Contains(m["error-message"], tc.want) {
				t.Errorf("%s: message %q, want %q", tc.text, m["error-message"], tc.want)
			}
			if strings.Contains(m["error-message"], "-9") || strings.Contains(m["error-message"], "-2") {
				t.Errorf("%s: a negative number in %q", tc.text, m["error-message"])
			}
		}
		unchanged("bad integers")
	})
	t.Run("pre-shared keys", func(t *testing.T) {
		for _, tc := range []struct{ desc, text, tag string }{
			{"newline", "ab\ncd", "invalid-value"},
			{"newline reference", "ab&#10;cd", "invalid-value"},
			{"carriage return", "ab&#13;cd", "invalid-value"},
			{"tab", "ab\tcd", "invalid-value"},
			{"line separator", "ab\u2028cd", "invalid-value"},
			{"NUL", "ab\x00cd", "malformed-message"},
			{"NUL reference", "ab&#0;cd", "malformed-message"},
			{"invalid UTF-8", "ab\xff\xfecd", "malformed-message"},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				typ := "application"
				if tc.tag == "malformed-message" {
					typ = "rpc"
				}
				m := rpcErr(t, c.rpc(keyEditRunning(tc.text)))
				if m["error-type"] != typ || m["error-tag"] != tc.tag {
					t.Fatalf("error %v, want %s/%s", m, typ, tc.tag)
				}
				if tc.tag == "invalid-value" && (!strings.Contains(m["error-message"], "<redacted>") || !strings.Contains(m["error-message"], "pattern")) {
					t.Errorf("message %q: want the key redacted and why", m["error-message"])
				}
				for k, v := range m {
					if strings.Contains(v, "ab") && strings.Contains(v, "cd") {
						t.Errorf("%s echoes the key: %q", k, v)
					}
				}
				unchanged(tc.desc)
			})
		}
		isOK(t, c.rpc(keyEditRunning("a good key, one line")))
		before = e.st.Running().ID
	})
	t.Run("bounded echo", func(t *testing.T) {
		huge := strings.Repeat("7", 1<<20)
		name := strings.Repeat("n", 100<<10)
		for _, tc := range []struct{ desc, op string }{
			{"number", policyEdit(`<lifetime>` + huge + `</lifetime>`)},
			{"enumeration", policyEdit(`<hash>` + strings.Repeat("x", 1<<20) + `</hash>`)},
			{"unknown element", policyEdit(`<` + name + `>1</` + name + `>`)},
			{"pattern", `<edit-config><target><running/></target><config><crypto xmlns="` + cryptoNS + `"><interfaces><interface><name>lan0</name><config><ipv4-address>` + huge + `</ipv4-address></config></interface></interfaces></crypto></config></edit-config>`},
			{"key value", `<edit-config><target><running/></target><config><crypto xmlns="` + cryptoNS + `"><transform-sets><transform-set><name>` + huge + `</name><config><name>x</name></config></transform-set></transform-sets></crypto></config></edit-config>`},
			{"secret", keyEditRunning(strings.Repeat("k", 1<<20))},
			{"default-operation", `<edit-config><target><running/></target><default-operation>` + huge + `</default-operation><config/></edit-config>`},
			{"malformed", `<get-config><source><running/></source><` + name + `></get-config>`},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				r := c.rpc(tc.op)
				m := rpcErr(t, r)
				total := 0
				for _, v := range m {
					total += len(v)
				}
				if total > 2048 {
					t.Errorf("the error echoes %d bytes: %.200s...", total, m["error-message"])
				}
				unchanged(tc.desc)
			})
		}
	})
}
