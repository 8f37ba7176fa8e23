package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
)

// limitParam reads ?limit= (1..most, default def).
func limitParam(r *http.Request, def, most int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, errStatus(http.StatusUnprocessableEntity, "invalid", "limit: a number from 1 to "+strconv.Itoa(most))
	}
	return n, nil
}

func (s *server) listCustomers(w http.ResponseWriter, r *http.Request, _ string) error {
	limit, err := limitParam(r, 100, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	page, err := s.e.Customers(r.Context(), q.Get("filter"), limit, q.Get("cursor"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *server) postBroadcast(w http.ResponseWriter, r *http.Request, actor string) error {
	var b engine.Broadcast
	if _, err := readJSON(w, r, s.cfg.MaxBody, &b); err != nil {
		return err
	}
	info, created, err := s.e.CreateBroadcast(r.Context(), b, actor)
	if err != nil {
		return err
	}
	status := http.StatusOK // a dry run, or the same broadcast again
	switch {
	case created && info.Status == redisstore.BroadcastDone:
		status = http.StatusCreated // empty audience: done at once
	case created:
		status = http.StatusAccepted
	}
	writeJSON(w, status, info)
	return nil
}

func (s *server) listBroadcasts(w http.ResponseWriter, r *http.Request, _ string) error {
	limit, err := limitParam(r, 50, 500)
	if err != nil {
		return err
	}
	offset := 0
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return errStatus(http.StatusUnprocessableEntity, "invalid", "offset: a number from 0")
		}
	}
	list, err := s.e.Broadcasts(r.Context(), offset, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"broadcasts": list})
	return nil
}

func broadcastID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := redisstore.ValidBroadcastID(id); err != nil {
		return "", errStatus(http.StatusBadRequest, "invalid_id", herald.ErrorMessage(err))
	}
	return id, nil
}

// getBroadcast answers with the broadcast's counts and, while messages wait
// for their customers' local time, how many and until when ("waiting").
func (s *server) getBroadcast(w http.ResponseWriter, r *http.Request, _ string) error {
	return onBroadcast(w, r, s.e.BroadcastView)
}

func (s *server) cancelBroadcast(w http.ResponseWriter, r *http.Request, _ string) error {
	return onBroadcast(w, r, s.e.CancelBroadcast)
}

// onBroadcast answers with what do returns for the broadcast in the path.
func onBroadcast[T any](w http.ResponseWriter, r *http.Request, do func(context.Context, string) (T, error)) error {
	id, err := broadcastID(r)
	if err != nil {
		return err
	}
	info, err := do(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}
