package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"
)

func TestPluginValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Plugin
		ok   bool
	}{
		{"peft", Plugin{Name: "peft.lora", Version: "1", PEFT: fakePEFT{}}, true},
		{"selector", Plugin{Name: "selector.acme.fancy-2", Version: "1", Selector: fakeSelector{}}, true},
		{"no implementation", Plugin{Name: "peft.x", Version: "1"}, false},
		{"two implementations", Plugin{Name: "peft.x", Version: "1", PEFT: fakePEFT{}, Selector: fakeSelector{}}, false},
		{"wrong namespace", Plugin{Name: "selector.x", Version: "1", PEFT: fakePEFT{}}, false},
		{"no namespace", Plugin{Name: "lora", Version: "1", PEFT: fakePEFT{}}, false},
		{"upper case", Plugin{Name: "peft.LoRA", Version: "1", PEFT: fakePEFT{}}, false},
		{"no version", Plugin{Name: "peft.x", PEFT: fakePEFT{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidPlugin) {
				t.Errorf("%v does not wrap ErrInvalidPlugin", err)
			}
		})
	}
}

// TestValidName: the names a host accepts from a plugin before it names a file after one.
func TestValidName(t *testing.T) {
	for _, tt := range []struct {
		name string
		kind Kind
		ok   bool
	}{
		{"peft.lora", KindPEFT, true},
		{"selector.acme.fancy-2", KindSelector, true},
		{"peft.x", KindSelector, false},
		{"../../escaped", KindPEFT, false},
		{"peft.../x", KindPEFT, false},
		{"peft.a/b", KindPEFT, false},
		{"peft.", KindPEFT, false},
		{"peft.x", "", false},
		{"peft.x", "other", false},
	} {
		err := ValidName(tt.name, tt.kind)
		if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidPlugin) {
			t.Errorf("ValidName(%q, %q) = %v, want ok=%v (ErrInvalidPlugin)", tt.name, tt.kind, err, tt.ok)
		}
	}
}

// TestLogHandler: a plugin's slog records come out in the JSON form go-plugin parses on the
// host: @level, @message, and @timestamp in its layout, then the attributes.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewLogHandler(&buf, slog.LevelDebug))
	l.Warn("disk is slow", "ms", 12)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec["@level"] != "warn" || rec["@message"] != "disk is slow" || rec["ms"] != 12.0 {
		t.Errorf("record %v", rec)
	}
	ts, _ := rec["@timestamp"].(string)
	if _, err := time.Parse(hclogTime, ts); err != nil {
		t.Errorf("timestamp %q: %v", ts, err)
	}
}

func TestHostPlugins(t *testing.T) {
	sets := HostPlugins()
	for _, v := range ProtocolVersions {
		set, ok := sets[v]
		if !ok {
			t.Fatalf("no plugin set for protocol %d", v)
		}
		for _, name := range []string{InfoName, string(KindPEFT), string(KindSelector)} {
			if set[name] == nil {
				t.Errorf("protocol %d: no %q plugin", v, name)
			}
		}
	}
	if _, ok := sets[ProtocolVersion]; !ok || Handshake.ProtocolVersion != ProtocolVersion {
		t.Error("the handshake's protocol version is not served")
	}
}
