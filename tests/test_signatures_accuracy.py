"""Accuracy floor: real host names with the app and tier the research says they must get.

Labels come from /work/shared/research/signatures.md (cited per block as "R §x.y") and the sources it and
the signature files cite, never from running the matcher. Positives: the expected app (or app set) and
confidence tier. Negatives: lookalikes and neighbours that must get no app at all (no match, or a `low`
vendor-contact match that names no app).
"""

from __future__ import annotations

import pytest

from netwatch.signatures import load_signature_set, normalize_name

POSITIVES: list[tuple[str, str, str]] = [
    # --- Alipay. R §1.1: HM3 cashier SDK GlobalConstants.js; IJPay AliPayApi.java; alipay-sdk-nodejs-all;
    # mxk0921/tb DnsValue.java (amdc.alipay.com HTTP-DNS, mobiledc.stable.alipay.net)
    ("mobilegw.alipay.com", "alipay", "high"),
    ("mcgw.alipay.com", "alipay", "high"),
    ("loggw-exsdk.alipay.com", "alipay", "high"),
    ("mclient.alipay.com", "alipay", "high"),
    ("wappaygw.alipay.com", "alipay", "high"),
    ("qr.alipay.com", "alipay", "high"),
    ("openapi.alipay.com", "alipay", "high"),
    ("mapi.alipay.com", "alipay", "high"),
    ("openauth.alipay.com", "alipay", "high"),
    ("amdc.alipay.com", "alipay", "high"),
    ("u.alipay.cn", "alipay", "high"),
    ("openapi-sandbox.dl.alipaydev.com", "alipay", "high"),
    ("mobilegw.alipaydev.com", "alipay", "high"),
    ("mobilegw.dl.alipaydev.com", "alipay", "high"),
    # R §1.1: alipay.net is Ant-internal (offline H5 host, dev gateways): attributed, but only medium.
    ("openapi-ztt-1.gz00b.dev.alipay.net", "alipay", "medium"),
    ("mobiledc.stable.alipay.net", "alipay", "medium"),
    # --- WeChat Pay, payment-specific. R §1.2: wechatpay-java Constant.java/HostName.java, wechatpay-go
    # README.md, IJPay WxDomainEnum.java, official H5 payment document (wx.tenpay.com mweb_url); paydns/mixpay
    # from public allow-lists (they match the wechatpay.cn suffix rule).
    ("api.mch.weixin.qq.com", "wechat_pay", "high"),
    ("api2.mch.weixin.qq.com", "wechat_pay", "high"),
    ("apihk.mch.weixin.qq.com", "wechat_pay", "high"),
    ("apius.mch.weixin.qq.com", "wechat_pay", "high"),
    ("fraud.mch.weixin.qq.com", "wechat_pay", "high"),
    ("api.wechatpay.cn", "wechat_pay", "high"),
    ("api2.wechatpay.cn", "wechat_pay", "high"),
    ("paydns.wechatpay.cn", "wechat_pay", "high"),
    ("szshort.mixpay.wechatpay.cn", "wechat_pay", "high"),
    ("pay.weixin.qq.com", "wechat_pay", "high"),
    ("support.pay.weixin.qq.com", "wechat_pay", "high"),
    ("szshort.pay.weixin.qq.com", "wechat_pay", "high"),
    ("payapp.weixin.qq.com", "wechat_pay", "high"),
    ("action.weixin.qq.com", "wechat_pay", "high"),
    ("wx.tenpay.com", "wechat_pay", "high"),
    # --- WeChat messenger = "WeChat present, which carries WeChat Pay": medium. R §1.2 hard case; nDPI
    # wechat.pcap.out (web.wechat.com, webpush., login.web.), dns_ambiguous_names (short.weixin.qq.com),
    # quickplay/KakaoTalk results (hkextshort.weixin.qq.com); anti-AD (aedns.weixin.qq.com).
    ("short.weixin.qq.com", "wechat_pay", "medium"),
    ("long.weixin.qq.com", "wechat_pay", "medium"),
    ("hkextshort.weixin.qq.com", "wechat_pay", "medium"),
    ("szshort.weixin.qq.com", "wechat_pay", "medium"),
    ("szextshort.weixin.qq.com", "wechat_pay", "medium"),
    ("dns.weixin.qq.com", "wechat_pay", "medium"),
    ("aedns.weixin.qq.com", "wechat_pay", "medium"),
    ("dns.weixin.qq.com.cn", "wechat_pay", "medium"),
    ("file.wx.qq.com", "wechat_pay", "medium"),
    ("login.wx.qq.com", "wechat_pay", "medium"),
    ("web.wechat.com", "wechat_pay", "medium"),
    ("webpush.wechat.com", "wechat_pay", "medium"),
    ("login.web.wechat.com", "wechat_pay", "medium"),
    ("longcloud.weixin.com", "wechat_pay", "medium"),
    ("shortcloud.weixin.com", "wechat_pay", "medium"),
    ("servicewechat.com", "wechat_pay", "medium"),
    # The second web-WeChat cluster and other names on the wx.qq.com certificate (nDPI wechat.pcap.out SANs;
    # wjdq/worldma ReqUrl.java and node-wechat-terminal consts.js for wx2.qq.com).
    ("wx2.qq.com", "wechat_pay", "medium"),
    ("login.wx2.qq.com", "wechat_pay", "medium"),
    ("webpush.wx2.qq.com", "wechat_pay", "medium"),
    ("file.wx2.qq.com", "wechat_pay", "medium"),
    ("wx1.qq.com", "wechat_pay", "medium"),
    ("wxitil.qq.com", "wechat_pay", "medium"),
    ("webpush1.weixin.qq.com", "wechat_pay", "medium"),
    ("loginpoll.weixin.qq.com", "wechat_pay", "medium"),
    ("webpush2.wechat.com", "wechat_pay", "medium"),
    # Link-security page (blackmatrix7 WeChat.list; alanhg redirect-url.js).
    ("weixin110.qq.com", "wechat_pay", "medium"),
    # Moments ad video and WeChat CDN media (decompiled WeChat 6.7.3 CdnLogic$Config; blackmatrix7 WeChat.list).
    ("wxsnsdy.wxs.qq.com", "wechat_pay", "medium"),
    ("wxsnsdythumb.wxs.qq.com", "wechat_pay", "medium"),
    ("szwbwxsns.video.qq.com", "wechat_pay", "medium"),
    ("szxzwxsns.video.qq.com", "wechat_pay", "medium"),
    ("szzjwxsns.video.qq.com", "wechat_pay", "medium"),
    ("shwbwxsns.video.qq.com", "wechat_pay", "medium"),
    ("shxzwxsns.video.qq.com", "wechat_pay", "medium"),
    ("shzjwxsns.video.qq.com", "wechat_pay", "medium"),
    ("vweixinf.tc.qq.com", "wechat_pay", "medium"),
    ("vweixinthumb.tc.qq.com", "wechat_pay", "medium"),
    ("wxapp.tc.qq.com", "wechat_pay", "medium"),
    ("wxappthumb.tc.qq.com", "wechat_pay", "medium"),
    # WeChat's own registrable domains (blackmatrix7 WeChat.list; AdGuard services/wechat.yml for weixinbridge).
    ("weixinbridge.com", "wechat_pay", "medium"),
    ("www.weixinbridge.com", "wechat_pay", "medium"),
    ("wechatlegal.net", "wechat_pay", "medium"),
    ("www.wechatos.net", "wechat_pay", "medium"),
    ("weixinsxy.com", "wechat_pay", "medium"),
    ("wechatpay.com.hk", "wechat_pay", "medium"),
    # --- QQ Wallet. R §1.3: IJPay QqPayApi.java (qpay.qq.com, api.qpay.qq.com); alex3236/pay README
    # (i.qianbao.qq.com); ToolQ LuckyPacket.kt (myun., mqq.tenpay.com); decompiled QQ AAShouKuanAppInfo.java
    # (mqq.tenpay.com); qqenvelop README (mp.qpay.tenpay.com); haxibiao-helpers (mp.qpay.tenpay.cn).
    ("qpay.qq.com", "qq_wallet", "high"),
    ("api.qpay.qq.com", "qq_wallet", "high"),
    ("i.qianbao.qq.com", "qq_wallet", "high"),
    ("myun.tenpay.com", "qq_wallet", "high"),
    ("mqq.tenpay.com", "qq_wallet", "high"),
    ("mp.qpay.tenpay.com", "qq_wallet", "high"),
    ("mp.qpay.tenpay.cn", "qq_wallet", "high"),
    # --- Tenpay shared by WeChat Pay and QQ Wallet. R §1.2/§1.3: "vendor/ambiguous {WeChat Pay, QQ Wallet}".
    ("www.tenpay.com", "wechat_pay+qq_wallet", "medium"),
    # --- Tencent QQ. R §1.4: mirai ServerList.kt/GroupActiveProtocol.kt/audio.kt/messageToElems.kt,
    # Lagrange.Core SocketContext.cs, LagrangeGo network.go/ecdh.go/client.go/operation.go, MiraiGo http_api.go;
    # anti-AD (openmsf.3g.qq.com); decompiled mobile QQ highway ConfigManager.java (htdata3., v6.htdata.qq.com).
    ("msfwifi.3g.qq.com", "tencent_qq", "high"),
    ("msfwifiv6.3g.qq.com", "tencent_qq", "high"),
    ("openmsf.3g.qq.com", "tencent_qq", "high"),
    ("keyrotate.qq.com", "tencent_qq", "high"),
    ("oidb.tim.qq.com", "tencent_qq", "high"),
    ("multimedia.nt.qq.com.cn", "tencent_qq", "high"),
    ("qun.qq.com", "tencent_qq", "high"),
    ("web.qun.qq.com", "tencent_qq", "high"),
    ("qinfo.clt.qq.com", "tencent_qq", "high"),
    ("grouptalk.c2c.qq.com", "tencent_qq", "high"),
    ("im.qq.com", "tencent_qq", "high"),
    ("gchat.qpic.cn", "tencent_qq", "high"),
    ("htdata3.qq.com", "tencent_qq", "high"),
    ("v6.htdata.qq.com", "tencent_qq", "high"),
    # R §1.4: QQ avatars; qlogo.cn also embedded elsewhere -> attributed but only low (LagrangeGo avatar.go).
    ("q1.qlogo.cn", "tencent_qq", "low"),
    ("p.qlogo.cn", "tencent_qq", "low"),
    # --- CamScanner. R §1.5: v2fly data/intsig; donglovexiao/Rewrite CamScannerPro.js, Mikephie/Script
    # CamScanner.js (camscanner.com); Mikephie/Script cs2-2.js and yjlsx quannengsaomiao.js (api-cs.intsig.net).
    ("www.camscanner.com", "camscanner", "high"),
    ("v4.camscanner.com", "camscanner", "high"),
    ("link.camscanner.com", "camscanner", "high"),
    ("dev.camscanner.com", "camscanner", "high"),
    ("www-sandbox.camscanner.com", "camscanner", "high"),
    ("api-cs.intsig.net", "camscanner", "high"),
    # One rewrite-script source each: Mikephie/Script cs1-3.js (d82. /sync/), yjlsx quannengsaomiao.js (cs8.).
    ("d82.intsig.net", "camscanner", "medium"),
    ("cs8.intsig.net", "camscanner", "medium"),
    # --- SHAREit. R §1.6: meltingscales/com.lenovo.anyshare.gps (C6558Ube.java, C21293usi.java, C9235bGg.java,
    # YHi.java, apkurlgrep.txt).
    ("api.dalyfeds.com", "shareit", "high"),
    ("active.dalyfeds.com", "shareit", "high"),
    ("activity-api.dalyfeds.com", "shareit", "high"),
    ("ladon.dalyfeds.com", "shareit", "high"),
    ("zj-api.dalyfeds.com", "shareit", "high"),
    ("api-user.dalyfeds.com", "shareit", "high"),
    ("feedback-api.dalyfeds.com", "shareit", "high"),
    ("api2.wshareit.com", "shareit", "high"),
    ("pay.wshareit.com", "shareit", "high"),
    ("web.wshareit.com", "shareit", "high"),
    ("test-api.wshareit.com", "shareit", "high"),
    ("cdn.ushareit.com", "shareit", "high"),
    ("relay.ushareit.com", "shareit", "high"),
    ("dev-api.wshareit.com", "shareit", "high"),
    ("alpha-api.wshareit.com", "shareit", "high"),
    ("zj-s.usicdn.com", "shareit", "high"),
    ("video-g.usicdn.com", "shareit", "high"),
    ("pc.ushareit.com", "shareit", "high"),
    ("static.wshareit.com", "shareit", "high"),
    # --- VMate. egg-react-ssr / ssr READMEs' users table (campaign.vmate.com, "Vmate短视频"); publicdata.vmate.in
    # is a single unrecorded code file -> medium (R §1.7 and signatures/apps/vmate.yaml status).
    ("campaign.vmate.com", "vmate", "high"),
    ("publicdata.vmate.in", "vmate", "medium"),
    # --- WPS Office. R §1.8: v2fly data/wps; George-boop-svg README (localhost.wbridge.wps.cn); QX rules.
    ("account.wps.cn", "wps_office", "high"),
    ("vip.wps.cn", "wps_office", "high"),
    ("drive.wps.cn", "wps_office", "high"),
    ("docs.wps.cn", "wps_office", "high"),
    ("qing.wps.cn", "wps_office", "high"),
    ("vasclt.wps.cn", "wps_office", "high"),
    ("moapi.wps.cn", "wps_office", "high"),
    ("clouddoc.wps.cn", "wps_office", "high"),
    ("localhost.wbridge.wps.cn", "wps_office", "high"),
    ("account.wps.com", "wps_office", "high"),
    ("api.wps.com", "wps_office", "high"),
    ("permits.wps.com", "wps_office", "high"),
    ("dcapi.wps.com", "wps_office", "high"),
    ("www.kdocs.cn", "wps_office", "high"),
    ("docer.com", "wps_office", "high"),
]

NEGATIVES: list[tuple[str, str]] = [
    # Synthetic label-boundary lookalikes and names embedding vendor strings (R §0 problem 3; felixonmars list).
    ("notalipay.com", "none"),
    ("alipay.com.evil.example", "none"),
    ("52alipay.com", "none"),
    ("bilalipay.com", "none"),
    ("whalipaycs.com", "none"),
    ("qq.com.evil.example", "none"),
    ("weixin.qq.com.attacker.example", "none"),
    ("mytenpay.com", "none"),
    ("xwechatpay.cn", "none"),
    ("wps.cn.example.org", "none"),
    ("camscanner.com.phish.example", "none"),
    ("gwpstools.com", "none"),
    ("lionkingsoft.com", "none"),
    ("koushare.com", "none"),
    ("shareitthrough.com", "none"),
    # Lookalikes of the new WeChat / QQ / CamScanner names.
    ("wx2.qq.com.evil.example", "none"),
    ("myweixinbridge.com", "none"),
    ("weixinbridge.com.example.net", "none"),
    ("wechatos.network", "none"),
    ("fakewechatlegal.net", "none"),
    ("xweixinsxy.com", "none"),
    ("htdata3.qq.com.example.org", "none"),
    # VMate lookalikes and unrelated "vmate" products (R §1.7).
    ("devmate.com", "none"),
    ("dl.devmate.com", "none"),
    ("updates.devmate.com", "none"),
    ("liivmate.com", "none"),
    ("m.liivmate.com", "none"),
    ("utsavmate.in", "none"),
    ("vmate.app", "none"),
    ("api.vmate.ai", "none"),
    ("vmate.herokuapp.com", "none"),
    # Unrelated.
    ("example.com", "none"),
    ("www.google.com", "none"),
    # Tencent neighbours (R §1.4, nDPI 1kxun.pcap.out): vendor contact at most.
    ("v.qq.com", "low"),
    ("vv.video.qq.com", "low"),
    ("mail.qq.com", "low"),
    ("y.qq.com", "low"),
    ("docs.qq.com", "low"),
    ("pingma.qq.com", "low"),
    ("beacon.qq.com", "low"),
    ("cgi.connect.qq.com", "low"),
    ("ssl.ptlogin2.qq.com", "low"),
    ("h5.qzone.qq.com", "low"),
    ("qzonestyle.gtimg.cn", "low"),
    ("mmbiz.qpic.cn", "low"),
    ("mmsns.qpic.cn", "low"),  # WeChat Moments images: no pinnable source, stays under qpic.cn
    ("c2cpicdw.qpic.cn", "low"),  # QQ C2C images: no pinnable source, stays under qpic.cn
    ("q.qlogo.cn", "low"),  # QQ avatars: no pinnable source, stays under qlogo.cn
    ("wxsnsdy.tc.qq.com", "low"),  # only the listed tc.qq.com media hosts are WeChat's
    ("video.dispatch.tc.qq.com", "low"),  # Tencent Video ads (tkzc11/QX-Rules AdBlock.js)
    ("xwxs.qq.com", "low"),
    ("wx3.qq.com", "low"),
    ("htdata2.qq.com", "low"),
    # Tencent Cloud IM, sold to third parties (chat-uikit-wechat README); QQ's own OIDB is oidb.tim.qq.com.
    ("webim.tim.qq.com", "low"),
    ("wss.tim.qq.com", "low"),
    ("www.qq.com.cn", "low"),  # qq.com.cn is Tencent's own domain, not a lookalike
    ("qq.com.cn", "low"),
    # R §2: WeChat platform names are not WeChat Pay.
    ("mp.weixin.qq.com", "low"),
    ("open.weixin.qq.com", "low"),
    # Loaded by unrelated software: the JS-SDK / WeUI / wxLogin.js host embedded by third-party pages
    # (SuAutumn/js-utils crossdomain.js, lonycc/docs Oauth2.0.md, yyhsong/iWeChat index14.php) and the server API
    # called by third-party backends (headplan/open_platform, deanjoson/groceryStore, lonycc/docs).
    ("res.wx.qq.com", "low"),
    ("api.weixin.qq.com", "low"),
    ("sz.api.weixin.qq.com", "low"),
    # Alibaba / Ant neighbours (R §1.1, nDPI weibo.pcap.out).
    ("g.alicdn.com", "low"),
    ("log.mmstat.com", "low"),
    ("login.taobao.com", "low"),
    ("gw.alipayobjects.com", "low"),
    ("mdap.alipaylog.com", "low"),
    ("www.uc.cn", "low"),
    # Device-fingerprint service loaded by other Alibaba apps and pages (JefChiu/XiamiThief main.coffee).
    ("ynuf.alipay.com", "low"),
    # Kingsoft / INTSIG / SHAREit Group neighbours (R §1.5, §1.6, §1.8).
    ("hdns.ksyun.com", "low"),
    ("www.kingsoft.com", "low"),
    # Also loaded by Kingsoft's iciba dictionary (GrandpaNiuu/GrandpaNiu kingsoft-power-word.conf).
    ("minfo.wps.cn", "low"),
    ("img.auction-ads.wpscdn.cn", "low"),
    ("www.iciba.com", "low"),
    ("kscord.com", "low"),
    ("static.intsig.net", "low"),
    ("bcr2.intsig.net", "low"),
    ("api.intsig.net", "low"),
    ("www.camcard.com", "low"),
    ("api.rqmob.com", "low"),
    ("gaea.hellay.net", "low"),
    ("api-v2.shareitgames.com", "low"),
    ("sentry.ushareit.org", "low"),  # SHAREit Group Sentry, also used by the group's web projects
]


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def test_table_sizes_meet_the_floor():
    assert len(POSITIVES) >= 100
    assert len(NEGATIVES) >= 50
    assert len({name for name, _, _ in POSITIVES}) == len(POSITIVES)
    assert {app for _, app, _ in POSITIVES} >= {
        "alipay", "camscanner", "qq_wallet", "shareit", "tencent_qq", "vmate", "wechat_pay", "wps_office",
    }


@pytest.mark.parametrize(("name", "app", "tier"), POSITIVES)
def test_positive(sigset, name, app, tier):
    match = sigset.match_name(normalize_name(name))
    assert match is not None, f"{name}: no match"
    assert set(match.apps) == set(app.split("+")), f"{name}: got {match.apps} from {match.file}:{match.line}"
    assert match.confidence == tier, f"{name}: got {match.confidence} from {match.file}:{match.line}"
    assert match.sources


@pytest.mark.parametrize(("name", "tier"), NEGATIVES)
def test_negative(sigset, name, tier):
    match = sigset.match_name(normalize_name(name))
    if tier == "none":
        assert match is None, f"{name}: unexpected {match}"
    else:
        assert match is not None and match.confidence == "low" and match.apps == (), f"{name}: got {match}"


def test_wechat_messenger_names_say_platform_not_payment(sigset):
    match = sigset.match_name("short.weixin.qq.com")
    assert match.note and "WeChat present" in match.note


@pytest.mark.parametrize(
    ("address", "vendor"),
    [
        ("119.29.29.98", "Tencent"),  # Tencent Cloud HTTPDNS (cloud.tencent.com/document/product/379)
        ("119.29.29.99", "Tencent"),
        ("203.107.1.33", "Alibaba Group"),  # AliOS-Things httpdns_opts.c
        ("203.107.1.1", "Alibaba Group"),
    ],
)
def test_httpdns_addresses_are_vendor_contact(sigset, address, vendor):
    match = sigset.match_ip(address)
    assert match is not None and match.role == "httpdns" and match.vendor == vendor and match.confidence == "low"


def test_unrelated_address_has_no_match(sigset):
    assert sigset.match_ip("8.8.8.8") is None


def accuracy_table() -> str:
    """The per-app table of docs/signatures.md ("Accuracy"), from these tables and the bundled set.

    Regenerate with ``PYTHONPATH=. python3 tests/test_signatures_accuracy.py``.
    """
    sigset = load_signature_set()
    rows: dict[str, list[int]] = {}
    for name, app, tier in POSITIVES:
        match = sigset.match_name(normalize_name(name))
        ok = match is not None and set(match.apps) == set(app.split("+")) and match.confidence == tier
        key = app.replace("+", " + ")
        row = rows.setdefault(key, [0, 0, 0, 0, 0])
        row[["high", "medium", "low"].index(tier)] += 1
        row[3] += 1
        row[4] += ok
    neg_total = len(NEGATIVES)
    neg_ok = 0
    for name, tier in NEGATIVES:
        match = sigset.match_name(normalize_name(name))
        if tier == "none":
            neg_ok += match is None
        else:
            neg_ok += match is not None and match.confidence == "low" and match.apps == ()
    lines = ["| app | positives | high | medium | low | correct |", "|---|---|---|---|---|---|"]
    for key in sorted(rows):
        high, medium, low, total, ok = rows[key]
        lines.append(f"| {key} | {total} | {high} | {medium} | {low} | {ok}/{total} |")
    total = sum(r[3] for r in rows.values())
    ok = sum(r[4] for r in rows.values())
    none = sum(1 for _, tier in NEGATIVES if tier == "none")
    lines.append(f"| **all positives** | {total} | | | | {ok}/{total} |")
    lines.append(f"| **negatives** (no match: {none}, vendor contact only: {neg_total - none}) | {neg_total} | | | "
                 f"| {neg_ok}/{neg_total} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(accuracy_table())
