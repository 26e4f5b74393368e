// Command erp_client is an ERP client of the hub in Go, on the code `buf generate` writes.
//
//	make gen-clients      # gen/go/src/smartinvoicing.pk/fbrhub/gen/go/fbrhub/v1
//	GOPATH=$PWD/gen/go:/usr/share/gocode GO111MODULE=off go build -o erp_client ./examples/go/erp_client
//	HUB_ADDRESS=127.0.0.1:50051 HUB_API_KEY=fbrhub_... ./erp_client
//
// (Debian's golang-google-grpc-dev and golang-google-genproto-dev provide grpc and genproto
// in GOPATH mode; in a module, require google.golang.org/grpc and google.golang.org/genproto
// instead.) It streams invoices in batches, one broken on purpose, and decodes the
// rejection's field violations; follows StreamResults from a cursor kept in a file until
// every accepted invoice has an outcome; and decodes a failed call's ErrorInfo. The last line
// it prints is a JSON summary (the repository's tests read it).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"os"
	"time"

	fbrhub "smartinvoicing.pk/fbrhub/gen/go/fbrhub/v1"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	count = 12
	batch = 5
)

type violation struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

type summary struct {
	Acks     int         `json:"acks"`
	Queued   int         `json:"queued"`
	Rejected []violation `json:"rejected"`
	Outcomes []string    `json:"outcomes"`
	NotFound struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"notFound"`
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// invoice builds a sandbox invoice; money and quantities are decimal strings.
func invoice(prefix string, n int) *fbrhub.Invoice {
	hsCode := "8516.4000"
	if n == 3 {
		hsCode = "85164000" // no dot: FBR error 0019
	}
	today := time.Now().UTC().Add(5 * time.Hour).Format("2006-01-02") // Pakistan's date
	return &fbrhub.Invoice{
		ErpReference:          fmt.Sprintf("%s-%03d", prefix, n),
		InvoiceType:           fbrhub.InvoiceType_INVOICE_TYPE_SALE_INVOICE,
		InvoiceDate:           today,
		ScenarioId:            "SN001",
		BuyerNtnCnic:          "2046004",
		BuyerBusinessName:     "Buyer Ltd",
		BuyerProvince:         "SINDH",
		BuyerAddress:          "Karachi",
		BuyerRegistrationType: fbrhub.BuyerRegistrationType_BUYER_REGISTRATION_TYPE_REGISTERED,
		Items: []*fbrhub.InvoiceItem{{
			HsCode:                hsCode,
			ProductDescription:    "Electric steam iron",
			SaleType:              "Goods at standard rate (default)",
			Rate:                  "18%",
			Uom:                   "Numbers, pieces, units",
			Quantity:              "2",
			ValueSalesExcludingSt: "9000.00",
			SalesTaxApplicable:    "1620.00",
			TotalValues:           "10620.00",
		}},
	}
}

// details reads the ErrorInfo reason and the field violations of a google.rpc.Status.
func details(proto *rpcstatus.Status) (string, []violation) {
	reason, found := "", []violation{}
	for _, detail := range status.FromProto(proto).Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				found = append(found, violation{Field: v.GetField(), Reason: v.GetReason()})
			}
		}
	}
	return reason, found
}

func submit(ctx context.Context, client fbrhub.InvoiceServiceClient, prefix string) ([]*fbrhub.InvoiceAck, error) {
	stream, err := client.SubmitInvoices(ctx)
	if err != nil {
		return nil, err
	}
	for start := 0; start < count; start += batch {
		request := &fbrhub.SubmitInvoicesRequest{}
		for n := start; n < start+batch && n < count; n++ {
			request.Invoices = append(request.Invoices, invoice(prefix, n))
		}
		if err := stream.Send(request); err != nil {
			return nil, err
		}
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var acks []*fbrhub.InvoiceAck
	for {
		response, err := stream.Recv()
		if err == io.EOF {
			return acks, nil
		}
		if err != nil {
			return nil, err
		}
		acks = append(acks, response.GetAcks()...)
	}
}

// follow reads results from the saved cursor until every waiting invoice has an outcome,
// saving the cursor of each message once handled.
func follow(ctx context.Context, client fbrhub.InvoiceServiceClient, cursorFile string, waiting map[string]bool) ([]string, error) {
	saved, _ := ioutil.ReadFile(cursorFile)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.StreamResults(ctx, &fbrhub.StreamResultsRequest{Cursor: string(saved), Follow: true})
	if err != nil {
		return nil, err
	}
	outcomes := map[string]string{}
	for len(outcomes) < len(waiting) {
		message, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		event := message.GetEvent()
		if event != nil && waiting[event.GetInvoiceId()] && event.GetKind() != fbrhub.ResultKind_RESULT_KIND_ALERT {
			outcomes[event.GetInvoiceId()] = event.GetKind().String()
		}
		if err := ioutil.WriteFile(cursorFile, []byte(message.GetCursor()), 0o600); err != nil {
			return nil, err
		}
	}
	kinds := []string{}
	for _, kind := range outcomes {
		kinds = append(kinds, kind)
	}
	return kinds, nil
}

func main() {
	address := env("HUB_ADDRESS", "127.0.0.1:50051")
	prefix := env("INVOICE_PREFIX", fmt.Sprintf("GO-%d", time.Now().Unix()))
	cursorFile := env("CURSOR_FILE", "go-example.cursor")
	apiKey := os.Getenv("HUB_API_KEY")
	if apiKey == "" {
		log.Fatal("set HUB_API_KEY")
	}
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := fbrhub.NewInvoiceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+apiKey)

	acks, err := submit(ctx, client, prefix)
	if err != nil {
		log.Fatal(err)
	}
	result := summary{Acks: len(acks), Rejected: []violation{}}
	waiting := map[string]bool{}
	for _, ack := range acks {
		if ack.GetOutcome() == fbrhub.AckOutcome_ACK_OUTCOME_REJECTED {
			reason, violations := details(ack.GetError())
			fmt.Printf("%s: REJECTED %s %v\n", ack.GetErpReference(), reason, violations)
			result.Rejected = append(result.Rejected, violations...)
			continue
		}
		fmt.Printf("%s: %s %s\n", ack.GetErpReference(), ack.GetOutcome(), ack.GetInvoiceId())
		waiting[ack.GetInvoiceId()] = true
	}
	result.Queued = len(waiting)
	if result.Outcomes, err = follow(ctx, client, cursorFile, waiting); err != nil {
		log.Fatal(err)
	}
	_, err = client.GetInvoice(ctx, &fbrhub.GetInvoiceRequest{ErpReference: prefix + "-missing"})
	if s, ok := status.FromError(err); ok && s.Code() == codes.NotFound {
		result.NotFound.Code = int(s.Code())
		result.NotFound.Reason, _ = details(s.Proto())
	}
	line, _ := json.Marshal(result)
	fmt.Println(string(line))
}
