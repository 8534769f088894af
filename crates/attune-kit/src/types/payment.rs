//! Ways to pay.

wire_enum! {
    /// A way to pay (`attune.common.v1.PaymentMethod`). Attune keeps which
    /// methods a customer prefers or used, never payment details.
    pub enum PaymentMethod mirrors PaymentMethod, a "payment method" {
        /// A credit or debit card.
        Card => "card",
        /// Apple Pay.
        ApplePay => "apple_pay",
        /// Google Pay.
        GooglePay => "google_pay",
        /// Buy now, pay later.
        BuyNowPayLater => "buy_now_pay_later",
        /// An invoice paid after delivery.
        Invoice => "invoice",
        /// Paid to the courier on delivery.
        CashOnDelivery => "cash_on_delivery",
        /// PayPal.
        Paypal => "paypal",
        /// A bank transfer before the order ships.
        BankTransfer => "bank_transfer",
        /// A gift card or store credit.
        GiftCard => "gift_card",
    }
}
