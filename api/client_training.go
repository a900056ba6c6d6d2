package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// StartTraining queues the training a model needs (see StartTrainingRequest).
func (c *Client) StartTraining(ctx context.Context, req *StartTrainingRequest) (*TrainingJobs, error) {
	return call[TrainingJobs](ctx, c, http.MethodPost, "/v1/models/"+seg(req.Model)+"/train", req, "")
}

// GetTraining returns a model's training jobs and progress.
func (c *Client) GetTraining(ctx context.Context, req *GetTrainingRequest) (*TrainingStatus, error) {
	return call[TrainingStatus](ctx, c, http.MethodGet, "/v1/models/"+seg(req.Model)+"/training", nil, "")
}

// CancelTraining cancels a model's unfinished training jobs.
func (c *Client) CancelTraining(ctx context.Context, req *CancelTrainingRequest) (*CancelTrainingResponse, error) {
	return call[CancelTrainingResponse](ctx, c, http.MethodDelete, "/v1/models/"+seg(req.Model)+"/training", nil, "")
}

// GetUnlearning returns a model's unlearning status.
func (c *Client) GetUnlearning(ctx context.Context, req *GetUnlearningRequest) (*UnlearningStatus, error) {
	return call[UnlearningStatus](ctx, c, http.MethodGet, "/v1/models/"+seg(req.Model)+"/unlearning", nil, "")
}

// WatchTraining follows a model's training through its Server-Sent Events stream, calling f
// with every status until the training is done (it returns the last status), f returns an
// error, or ctx ends. An error event ends it with the server's *Error: code CodeUnavailable
// when the server shuts down (the training goes on at its next start: watch again then).
func (c *Client) WatchTraining(ctx context.Context, req *GetTrainingRequest, f func(*TrainingStatus) error) (*TrainingStatus, error) {
	path := "/v1/models/" + seg(req.Model) + "/training/events"
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.JoinPath(path).String(), nil)
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	hr.Header.Set("Accept", "text/event-stream")
	if c.key != "" {
		hr.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, errorOf(resp.StatusCode, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var event string
	var last *TrainingStatus
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			if event == "error" { // the error body ({"error":{...}}): the server could not go on
				var eb ErrorBody
				if json.Unmarshal([]byte(data), &eb) != nil || eb.Error == nil {
					return last, fmt.Errorf("api: training events: %s", data)
				}
				return last, eb.Error
			}
			st := new(TrainingStatus)
			if err := json.Unmarshal([]byte(data), st); err != nil {
				return last, fmt.Errorf("api: training events: %w", err)
			}
			last = st
			if err := f(st); err != nil {
				return last, err
			}
			if event == "done" {
				return last, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return last, fmt.Errorf("api: training events: %w", err)
	}
	return last, fmt.Errorf("api: training events: the stream ended before training was done")
}
