package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/alicebob/miniredis/v2"
	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/preferences"
)

// exampleRedis stands in for herald's Redis so the examples run anywhere;
// an app passes the URL of the Redis its herald workers use.
func exampleRedis() (url string, stop func()) {
	m, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	return "redis://" + m.Addr(), m.Close
}

func Example() {
	url, stop := exampleRedis()
	defer stop()
	ctx := context.Background()

	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Actor = "signup-service" // named in timeline and consent entries

	cust, err := c.UpsertCustomer(ctx, herald.Customer{
		ID: "c42", Email: "ada@example.com", Locale: "pl", Timezone: "Europe/Warsaw",
		Attributes: map[string]any{"first_name": "Ada"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("customer", cust.ID, cust.Locale)

	// Start the journeys triggered by trial.started.
	if _, err := c.Event(ctx, "c42", "trial.started", map[string]any{"plan": "Pro"}); err != nil {
		log.Fatal(err)
	}

	// A one-off message: the worker renders it in Polish and checks Ada's
	// preferences when it sends.
	if _, err := c.Send(ctx, client.Message{
		CustomerID: "c42", Template: "password-reset", Topic: "security",
		Data: map[string]any{"reset_url": "https://app.example.com/reset/abc"},
	}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("queued")
	// Output:
	// customer c42 pl
	// queued
}

func ExampleClient_Event_idempotent() {
	url, stop := exampleRedis()
	defer stop()
	ctx := context.Background()
	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.UpsertCustomer(ctx, herald.Customer{ID: "c42", Email: "ada@example.com"}); err != nil {
		log.Fatal(err)
	}

	// An app that retries after a timeout sends the same key: the event
	// counts once.
	first, _ := c.Event(ctx, "c42", "order.paid", map[string]any{"order": "A-17"}, "order-A-17")
	retry, _ := c.Event(ctx, "c42", "order.paid", map[string]any{"order": "A-17"}, "order-A-17")
	fmt.Println("same event:", first == retry)
	// Output:
	// same event: true
}

func ExampleClient_Send_errors() {
	url, stop := exampleRedis()
	defer stop()
	ctx := context.Background()
	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.UpsertCustomer(ctx, herald.Customer{ID: "c42", Email: "ada@example.com"}); err != nil {
		log.Fatal(err)
	}

	_, err = c.Send(ctx, client.Message{CustomerID: "c42", Template: "welcome", Topic: "onboarding", Channels: []herald.Channel{"fax"}})
	fmt.Println(herald.ErrorCode(err), "-", herald.ErrorMessage(err))

	_, err = c.Send(ctx, client.Message{CustomerID: "c7", Template: "welcome", Topic: "onboarding"})
	fmt.Println(herald.ErrorCode(err), "-", herald.ErrorMessage(err))
	// Output:
	// invalid - unknown channel "fax"
	// not_found - customer "c7" not found
}

func ExampleClient_SetPreferences() {
	url, stop := exampleRedis()
	defer stop()
	ctx := context.Background()
	c, err := client.New(url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Actor = "support-desk"
	if _, err := c.UpsertCustomer(ctx, herald.Customer{ID: "c42", Email: "ada@example.com"}); err != nil {
		log.Fatal(err)
	}

	// Ada asked support for no more product updates, and Slack first.
	p, err := c.SetPreferences(ctx, "c42", preferences.Patch{
		Topics:       map[string]bool{"product-updates": false},
		ChannelOrder: []herald.Channel{herald.ChannelSlack, herald.ChannelEmail},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("product-updates:", p.Topics["product-updates"])
	fmt.Println("order:", p.ChannelOrder)
	// Output:
	// product-updates: false
	// order: [slack email]
}
