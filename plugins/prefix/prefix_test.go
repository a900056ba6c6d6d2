package prefix_test

import (
	"testing"

	"github.com/s3t-dev/s3t/plugins/prefix"
	"github.com/s3t-dev/s3t/sdk/sdktest"
)

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunPEFT(t, prefix.Name, prefix.New(), sdktest.WithConfigs(`{"tokens": 3, "tokens_pattern": {"1": 0}}`))
}
