//! Every text of the customer's pages, in each language the pages speak.
//! One table: a text missing in a language does not compile.

use super::locale::Locale;

macro_rules! texts {
    ($($name:ident: $en:literal, $zh:literal;)*) => {
        /// The texts of the customer's pages in one language.
        #[derive(Debug)]
        pub struct Texts {
            $(#[doc = $en] pub $name: &'static str,)*
        }

        /// The pages in English.
        pub static EN: Texts = Texts { $($name: $en,)* };

        /// The pages in Simplified Chinese.
        pub static ZH: Texts = Texts { $($name: $zh,)* };
    };
}

texts! {
    brand: "Credits", "积分";
    skip: "Skip to content", "跳到正文";
    nav_label: "Sections", "栏目";
    nav_overview: "Overview", "概览";
    nav_history: "History", "记录";
    nav_usage: "Usage", "用量";
    nav_keys: "API keys", "API 密钥";
    sign_out: "Sign out", "退出";
    back_to_app: "Back to the app", "返回应用";
    read_only: "Read-only view: nothing can be changed here.", "只读视图：此处不能做任何更改。";
    available: "Available credits", "可用积分";
    held: "Held", "冻结";
    debt: "Debt", "欠款";
    plan_label: "Plan", "套餐";
    period_ends: "Period ends", "本期结束";
    no_plan: "No plan", "无套餐";
    forecast_until: "At the last 7 days' rate, your credits last until", "按最近 7 天的用量，您的积分可用到";
    forecast_rate: "credits a day", "积分/天";
    forecast_none: "No credits spent in the last 7 days.", "最近 7 天没有消耗积分。";
    lots_title: "What your balance is made of", "余额构成";
    col_source: "Source", "来源";
    col_remaining: "Remaining", "剩余";
    col_expires: "Expires", "到期";
    never: "Never", "永不";
    no_lots: "No credits yet.", "还没有积分。";
    add_title: "Add credits", "充值积分";
    credits_word: "credits", "积分";
    buy: "Buy", "购买";
    custom_amount: "Custom amount (USD)", "自定义金额（美元）";
    custom_hint: "At least $5.", "最低 5 美元。";
    buy_custom: "Buy credits", "购买积分";
    payments_off: "Purchases are not available.", "暂不支持购买。";
    no_packages: "No packages for sale.", "暂无可购买的积分包。";
    checkout_pending: "Payment received. Your credits arrive in a moment; this page refreshes.", "已收到付款，积分即将到账，本页会自动刷新。";
    checkout_done: "Your purchase is complete and the credits are in your balance.", "购买完成，积分已到账。";
    checkout_failed: "The payment did not go through.", "付款未成功。";
    checkout_canceled: "The purchase was canceled; nothing was charged.", "购买已取消，未扣款。";
    current_plan: "Current plan", "当前套餐";
    past_due: "Payment past due", "付款逾期";
    ends_at_period_end: "Ends at the end of the period", "将在本期结束时终止";
    cancel_plan: "Cancel at period end", "在本期结束时取消";
    switch_plan: "Switch", "切换";
    subscribe: "Subscribe", "订阅";
    other_plans: "Other plans", "其他套餐";
    per: " per ", "/";
    free: "Free", "免费";
    interval_day: "day", "天";
    interval_week: "week", "周";
    interval_month: "month", "月";
    interval_year: "year", "年";
    pm_title: "Payment method", "支付方式";
    no_card: "No card saved.", "尚未保存银行卡。";
    card_expires: "expires", "有效期至";
    add_card: "Add a card", "添加银行卡";
    replace_card: "Replace card", "更换银行卡";
    at_title: "Auto top-up", "自动充值";
    at_enabled: "Top up automatically", "自动充值";
    at_threshold: "When available credits fall below", "当可用积分低于";
    at_amount: "Add (USD)", "充值金额（美元）";
    at_cap: "Monthly cap (USD, optional)", "每月上限（美元，可选）";
    at_needs_card: "Add a payment method before turning on auto top-up.", "开启自动充值前请先添加支付方式。";
    at_failed: "The last auto top-up failed:", "上次自动充值失败：";
    save: "Save", "保存";
    saved: "Saved.", "已保存。";
    daily_title: "Daily reward", "每日奖励";
    claim: "Claim today's reward", "领取今日奖励";
    claimed: "Today's reward is claimed. The next one from", "今日奖励已领取。下次领取时间：";
    claimed_now: "Reward claimed.", "奖励已领取。";
    history_title: "History", "积分记录";
    filter_label: "Show", "显示";
    kind_all: "All", "全部";
    kind_purchase: "Purchases", "购买";
    kind_auto_topup: "Auto top-ups", "自动充值";
    kind_usage: "Usage", "消耗";
    kind_other_grants: "Other grants", "其他发放";
    kind_expiry: "Expired", "过期";
    kind_refund: "Refunds", "退款";
    col_date: "Date (UTC)", "时间（UTC）";
    col_type: "Type", "类型";
    col_amount: "Amount", "数量";
    col_balance: "Balance after", "变动后余额";
    col_details: "Details", "详情";
    paid: "Paid", "支付";
    invoice: "Invoice", "发票";
    receipt: "Receipt", "收据";
    older: "Older", "更早";
    newest: "Newest", "最新";
    nothing_yet: "Nothing here yet.", "暂无记录。";
    usage_title: "Usage in the last 30 days", "最近 30 天用量";
    split_label: "Split by", "分组";
    by_model: "Model", "模型";
    by_feature: "Feature", "功能";
    by_project: "Project", "项目";
    chart_label: "Credits spent per day", "每日消耗积分";
    col_day: "Day", "日期";
    col_group: "Group", "分组";
    col_spent: "Credits spent", "消耗积分";
    total: "Total", "合计";
    other: "Other", "其他";
    none_label: "(none)", "（无）";
    recent_calls: "Recent calls", "最近调用";
    col_model: "Model", "模型";
    col_input: "Input tokens", "输入 tokens";
    col_output: "Output tokens", "输出 tokens";
    col_cost: "Credits", "积分";
    keys_title: "API keys", "API 密钥";
    keys_intro: "Keys for calling the AI gateway; every key spends from this account.", "用于调用 AI 网关的密钥；所有密钥都从本账户扣费。";
    key_name: "Name", "名称";
    key_project: "Project (optional)", "项目（可选）";
    key_limit: "Spend limit per day, credits (optional)", "每日消费上限，积分（可选）";
    create_key: "Create key", "创建密钥";
    key_once: "Copy this key now: it is not shown again.", "请立即复制此密钥：它不会再次显示。";
    col_key: "Key", "密钥";
    col_created: "Created", "创建时间";
    col_last_used: "Last used", "最近使用";
    col_limit: "Limit", "上限";
    revoke: "Revoke", "吊销";
    revoked: "Key revoked.", "密钥已吊销。";
    no_keys: "No keys.", "没有密钥。";
    provider_title: "Your provider keys", "您的服务商密钥";
    provider_intro: "Calls with your own provider key are billed by the provider, not in credits.", "使用您自己的服务商密钥的调用由服务商计费，不消耗积分。";
    col_provider: "Provider", "服务商";
    provider_key: "Provider API key", "服务商 API 密钥";
    ends_with: "ends with", "末尾为";
    save_key: "Save key", "保存密钥";
    remove: "Remove", "删除";
    link_title: "This link cannot be used", "此链接无法使用";
    link_used: "This link has been used or has expired. Ask the app for a new one.", "此链接已使用或已过期，请在应用中重新获取。";
    session_ended: "Your session has ended. Open the Credits page from the app again.", "会话已结束，请从应用中重新打开积分页面。";
    error: "Something went wrong:", "出错了：";
    type_grant: "Grant", "发放";
    type_consume: "Usage", "消耗";
    type_hold: "Reserved", "预留";
    type_hold_commit: "Usage", "消耗";
    type_hold_release: "Released", "释放";
    type_expire: "Expired", "过期";
    type_void: "Voided", "作废";
    type_refund: "Refund", "退还";
    type_debt_repayment: "Debt repaid", "偿还欠款";
    type_rollover: "Rolled over", "结转";
    type_debt_settlement: "Debt billed", "欠款结算";
    type_claw_back: "Taken back", "收回";
    source_signup_bonus: "Sign-up bonus", "注册奖励";
    source_daily_reward: "Daily reward", "每日奖励";
    source_subscription: "Plan credits", "套餐积分";
    source_purchase: "Purchase", "购买";
    source_auto_topup: "Auto top-up", "自动充值";
    source_admin: "Granted", "人工发放";
    source_promo: "Promotion", "促销";
    source_rollover: "Rolled over", "结转";
    source_refund: "Refund", "退款";
}

impl Texts {
    /// The texts in `locale`.
    pub fn of(locale: Locale) -> &'static Texts {
        match locale {
            Locale::En => &EN,
            Locale::Zh => &ZH,
        }
    }

    /// The name of a grant's source, by its API code; the code itself for
    /// one these texts do not know.
    pub fn source<'a>(&self, code: &'a str) -> &'a str
    where
        'static: 'a,
    {
        match code {
            "signup_bonus" => self.source_signup_bonus,
            "daily_reward" => self.source_daily_reward,
            "subscription" => self.source_subscription,
            "purchase" => self.source_purchase,
            "auto_topup" => self.source_auto_topup,
            "admin" => self.source_admin,
            "promo" => self.source_promo,
            "rollover" => self.source_rollover,
            "refund" => self.source_refund,
            other => other,
        }
    }

    /// The name of a transaction's type, by its API code.
    pub fn tx_type<'a>(&self, code: &'a str) -> &'a str
    where
        'static: 'a,
    {
        match code {
            "grant" => self.type_grant,
            "consume" => self.type_consume,
            "hold" => self.type_hold,
            "hold_commit" => self.type_hold_commit,
            "hold_release" => self.type_hold_release,
            "expire" => self.type_expire,
            "void" => self.type_void,
            "refund" => self.type_refund,
            "debt_repayment" => self.type_debt_repayment,
            "rollover" => self.type_rollover,
            "debt_settlement" => self.type_debt_settlement,
            "claw_back" => self.type_claw_back,
            other => other,
        }
    }

    /// The name of a plan's interval (`month`), by its API code.
    pub fn interval<'a>(&self, code: &'a str) -> &'a str
    where
        'static: 'a,
    {
        match code {
            "day" => self.interval_day,
            "week" => self.interval_week,
            "month" => self.interval_month,
            "year" => self.interval_year,
            other => other,
        }
    }

    /// The label of a history filter.
    pub fn history_kind(&self, kind: super::history::HistoryKind) -> &'static str {
        use super::history::HistoryKind as K;
        match kind {
            K::All => self.kind_all,
            K::Purchase => self.kind_purchase,
            K::AutoTopup => self.kind_auto_topup,
            K::Usage => self.kind_usage,
            K::OtherGrants => self.kind_other_grants,
            K::Expiry => self.kind_expiry,
            K::Refund => self.kind_refund,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_translated_into_chinese() {
        // The sources and types every page names, and the page's own words.
        let en = format!("{EN:?}");
        let zh = format!("{ZH:?}");
        let en_values: Vec<&str> = en.split('"').skip(1).step_by(2).collect();
        let zh_values: Vec<&str> = zh.split('"').skip(1).step_by(2).collect();
        assert_eq!(en_values.len(), zh_values.len());
        for (en, zh) in en_values.iter().zip(&zh_values) {
            assert!(!zh.is_empty(), "an empty text beside {en:?}");
            assert_ne!(en, zh, "{en:?} is not translated");
        }
    }

    #[test]
    fn every_source_and_type_of_the_ledger_has_a_name() {
        for source in ledger::Source::ALL {
            assert_ne!(EN.source(source.code()), source.code());
        }
        for kind in ledger::TxKind::ALL {
            assert_ne!(EN.tx_type(kind.code()), kind.code());
        }
    }
}
