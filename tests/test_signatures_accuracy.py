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
    # const.go, IJPay WxDomainEnum.java, WeiXinMPSDK (wx.tenpay.com); paydns/mixpay from public allow-lists.
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
    # quickplay/KakaoTalk results (hkextshort.weixin.qq.com, res.wx.qq.com); anti-AD (aedns.weixin.qq.com).
    ("short.weixin.qq.com", "wechat_pay", "medium"),
    ("long.weixin.qq.com", "wechat_pay", "medium"),
    ("hkextshort.weixin.qq.com", "wechat_pay", "medium"),
    ("szshort.weixin.qq.com", "wechat_pay", "medium"),
    ("szextshort.weixin.qq.com", "wechat_pay", "medium"),
    ("dns.weixin.qq.com", "wechat_pay", "medium"),
    ("aedns.weixin.qq.com", "wechat_pay", "medium"),
    ("dns.weixin.qq.com.cn", "wechat_pay", "medium"),
    ("res.wx.qq.com", "wechat_pay", "medium"),
    ("file.wx.qq.com", "wechat_pay", "medium"),
    ("login.wx.qq.com", "wechat_pay", "medium"),
    ("web.wechat.com", "wechat_pay", "medium"),
    ("webpush.wechat.com", "wechat_pay", "medium"),
    ("login.web.wechat.com", "wechat_pay", "medium"),
    ("longcloud.weixin.com", "wechat_pay", "medium"),
    ("shortcloud.weixin.com", "wechat_pay", "medium"),
    ("servicewechat.com", "wechat_pay", "medium"),
    # --- QQ Wallet. R §1.3: IJPay QqPayApi.java (qpay.qq.com, api.qpay.qq.com); decompiled QQ
    # (i.qianbao.qq.com, myun.tenpay.com, mqq.tenpay.com); haxibiao-helpers (mp.qpay.tenpay.cn).
    ("qpay.qq.com", "qq_wallet", "high"),
    ("api.qpay.qq.com", "qq_wallet", "high"),
    ("i.qianbao.qq.com", "qq_wallet", "high"),
    ("myun.tenpay.com", "qq_wallet", "high"),
    ("mqq.tenpay.com", "qq_wallet", "high"),
    ("mp.qpay.tenpay.com", "qq_wallet", "high"),
    ("mp.qpay.tenpay.cn", "qq_wallet", "high"),
    # --- Tenpay shared by WeChat Pay and QQ Wallet. R §1.2/§1.3: "vendor/ambiguous {WeChat Pay, QQ Wallet}".
    ("www.tenpay.com", "wechat_pay+qq_wallet", "medium"),
    # --- Tencent QQ. R §1.4: mirai ServerList.kt, LagrangeGo network.go/ecdh.go/client.go/operation.go;
    # anti-AD (openmsf.3g.qq.com).
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
    ("c2cpicdw.qpic.cn", "tencent_qq", "high"),
    # R §1.4: QQ avatars; qlogo.cn also embedded elsewhere -> attributed but only low.
    ("q.qlogo.cn", "tencent_qq", "low"),
    ("q1.qlogo.cn", "tencent_qq", "low"),
    ("p.qlogo.cn", "tencent_qq", "low"),
    # --- CamScanner. R §1.5: v2fly data/intsig; donglovexiao/Rewrite CamScannerPro.js (api-cs.intsig.net).
    ("www.camscanner.com", "camscanner", "high"),
    ("v4.camscanner.com", "camscanner", "high"),
    ("link.camscanner.com", "camscanner", "high"),
    ("dev.camscanner.com", "camscanner", "high"),
    ("www-sandbox.camscanner.com", "camscanner", "high"),
    ("api-cs.intsig.net", "camscanner", "high"),
    # --- SHAREit. R §1.6: meltingscales/com.lenovo.anyshare.gps (C6558Ube.java, C21293usi.java, YHi.java,
    # assets, apkurlgrep.txt).
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
    ("zj-s.usicdn.com", "shareit", "high"),
    ("video-g.usicdn.com", "shareit", "high"),
    ("sentry.ushareit.org", "shareit", "high"),
    # --- VMate. ykfe/ssr users table (campaign.vmate.com, "Vmate短视频"); publicdata.vmate.in is a single
    # unrecorded code file -> medium (R §1.7 and signatures/apps/vmate.yaml status).
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
    ("www.qq.com.cn", "low"),  # qq.com.cn is Tencent's own domain, not a lookalike
    ("qq.com.cn", "low"),
    # R §2: WeChat platform names are not WeChat Pay.
    ("mp.weixin.qq.com", "low"),
    ("open.weixin.qq.com", "low"),
    # Alibaba / Ant neighbours (R §1.1, nDPI weibo.pcap.out).
    ("g.alicdn.com", "low"),
    ("log.mmstat.com", "low"),
    ("login.taobao.com", "low"),
    ("gw.alipayobjects.com", "low"),
    ("mdap.alipaylog.com", "low"),
    ("www.uc.cn", "low"),
    # Kingsoft / INTSIG / SHAREit Group neighbours (R §1.5, §1.6, §1.8).
    ("hdns.ksyun.com", "low"),
    ("www.kingsoft.com", "low"),
    ("static.intsig.net", "low"),
    ("bcr2.intsig.net", "low"),
    ("www.camcard.com", "low"),
    ("api.rqmob.com", "low"),
    ("gaea.hellay.net", "low"),
    ("api-v2.shareitgames.com", "low"),
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
