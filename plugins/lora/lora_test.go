package lora_test

import (
	"testing"

	"github.com/s3t-dev/s3t/plugins/lora"
	"github.com/s3t-dev/s3t/sdk/sdktest"
)

func TestConformanceInProcess(t *testing.T) {
	sdktest.RunPEFT(t, lora.Name, lora.New(),
		sdktest.WithConfigs(`{"rank": 2, "alpha": 4, "targets": ["key", "mlp_in", "mlp_out", "attention_output"], "rank_pattern": {"0": 0, "encoder.layer.3": 16}, "dropout": 0.1}`))
}
