package adapter_test

import (
	"testing"

	"github.com/s3t-dev/s3t/plugins/adapter"
	"github.com/s3t-dev/s3t/sdk/sdktest"
)

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunPEFT(t, adapter.Name, adapter.New(), sdktest.WithConfigs(`{"reduction_factor": 4, "nonlinearity": "gelu"}`, `{"nonlinearity": "silu"}`))
}
