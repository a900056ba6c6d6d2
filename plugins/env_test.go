package plugins_test

import (
	"testing"

	"github.com/s3t-dev/s3t/plugins"
	"github.com/s3t-dev/s3t/sdk"
)

// TestQualifiedName: a short name gets its kind's namespace whether or not it has a dot of its
// own (a plugin author's "acme.bitfit" found no plugin "peft.acme.bitfit"); a full name, of the
// kind or of another, is kept.
func TestQualifiedName(t *testing.T) {
	for _, tt := range []struct {
		kind       sdk.Kind
		name, want string
	}{
		{sdk.KindPEFT, "lora", "peft.lora"},
		{sdk.KindPEFT, "peft.lora", "peft.lora"},
		{sdk.KindPEFT, "acme.bitfit", "peft.acme.bitfit"},
		{sdk.KindPEFT, "peft.acme.bitfit", "peft.acme.bitfit"},
		{sdk.KindPEFT, "selector.cyclic", "selector.cyclic"},
		{sdk.KindPEFT, "peftish", "peft.peftish"},
		{sdk.KindSelector, "cyclic", "selector.cyclic"},
		{sdk.KindSelector, "acme.revrot", "selector.acme.revrot"},
		{sdk.KindSelector, "selector.acme.revrot", "selector.acme.revrot"},
		{sdk.KindSelector, "peft.lora", "peft.lora"},
	} {
		if got := plugins.QualifiedName(tt.kind, tt.name); got != tt.want {
			t.Errorf("QualifiedName(%s, %q) = %q, want %q", tt.kind, tt.name, got, tt.want)
		}
	}
}
